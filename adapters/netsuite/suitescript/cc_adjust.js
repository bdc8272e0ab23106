/**
 * cc_adjust: posts one cycle-count inventory adjustment per externalId, exactly once.
 *
 * Deployed as script customscript_cc_adjust, deployment customdeploy_cc_adjust (see README.md).
 * The contract is in README.md; tests/fakes/netsuite.py copies it for local tests, so change
 * both together.
 *
 * Guarantees:
 *   - POST creates at most one inventory adjustment per externalId. A repeat, or a request that
 *     lost a race for the same externalId, gets the first adjustment's id with duplicate: true.
 *   - All or nothing: NetSuite saves the record with every line, or saves nothing.
 *   - Errors this script catches come back as HTTP 200 {ok: false, error: {code, message}}.
 *     Only errors from NetSuite itself (login, concurrency, a body that is not JSON) use other
 *     HTTP statuses.
 *
 * @NApiVersion 2.1
 * @NScriptType Restlet
 * @NModuleScope SameAccount
 */
define(['N/record', 'N/search', 'N/error', 'N/log'], (record, search, error, log) => {
    const MAX_LINES = 1000;
    const REF_KEY = /^[1-9]\d*$/;
    const NUMBER = /^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$/;
    const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

    const fail = (code, message) => {
        throw error.create({ name: code, message, notifyOff: true });
    };

    const isMissing = (value) =>
        value === undefined || value === null || (typeof value === 'string' && value.trim() === '');

    const required = (object, key, path) => {
        const value = object[key];
        if (isMissing(value)) fail('USER_ERROR', `Please enter value(s) for: ${path}`);
        return value;
    };

    const optionalText = (object, key, path) => {
        const value = object[key];
        if (value === undefined || value === null) return '';
        if (typeof value !== 'string') {
            fail('INVALID_FLD_VALUE', `You have entered an Invalid Field Value ${JSON.stringify(value)} for: ${path}`);
        }
        return value;
    };

    // Ids arrive as JSON numbers or strings. Check the format here; NetSuite checks that the
    // record exists when the adjustment is saved (INVALID_KEY_OR_REF).
    const refKey = (value, field) => {
        const text = String(value).trim();
        if (!REF_KEY.test(text)) fail('INVALID_KEY_OR_REF', `Invalid ${field} reference key ${text}.`);
        return Number(text);
    };

    const quantity = (value, path) => {
        let text = null;
        if (typeof value === 'number') text = String(value);
        else if (typeof value === 'string') text = value.trim();
        if (text === null || !NUMBER.test(text) || !Number.isFinite(Number(text))) {
            fail('INVALID_FLD_VALUE', `You have entered an Invalid Field Value ${JSON.stringify(value)} for: ${path}`);
        }
        const amount = Number(text);
        if (amount === 0) fail('INVALID_FLD_VALUE', `${path} must not be zero.`);
        return amount;
    };

    // Build the Date from its parts rather than parsing the string: Date.parse('YYYY-MM-DD') is
    // UTC midnight, which the Pacific-time server would show as the day before.
    const tranDate = (value) => {
        const match = typeof value === 'string' ? ISO_DATE.exec(value) : null;
        if (match) {
            const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
            const date = new Date(year, month - 1, day);
            if (date.getFullYear() === year && date.getMonth() === month - 1 && date.getDate() === day) return date;
        }
        return fail('INVALID_FLD_VALUE', `You have entered an Invalid Field Value ${JSON.stringify(value)} for: tranDate`);
    };

    const isoDate = (date) => {
        const pad = (n) => String(n).padStart(2, '0');
        return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
    };

    const findByExternalId = (externalId) => {
        let id = null;
        search
            .create({
                type: search.Type.INVENTORY_ADJUSTMENT,
                filters: [['externalid', 'anyof', externalId], 'AND', ['mainline', 'is', 'T']],
                columns: ['internalid'],
            })
            .run()
            .each((result) => {
                id = String(result.id);
                return false;
            });
        return id;
    };

    // Check required fields and shapes before ids, in the order the fake checks them, so both
    // report the same first error for the same body.
    const validate = (body, externalId) => {
        const subsidiaryRaw = required(body, 'subsidiaryId', 'subsidiaryId');
        const accountRaw = required(body, 'accountId', 'accountId');
        const locationRaw = required(body, 'locationId', 'locationId');
        const date = tranDate(required(body, 'tranDate', 'tranDate'));
        const memo = optionalText(body, 'memo', 'memo');
        const rawLines = body.lines;
        if (rawLines === undefined || rawLines === null || (Array.isArray(rawLines) && rawLines.length === 0)) {
            fail('USER_ERROR', 'Please enter value(s) for: lines');
        }
        if (!Array.isArray(rawLines)) fail('INVALID_FLD_VALUE', 'lines must be an array of adjustment lines.');
        if (rawLines.length > MAX_LINES) {
            fail('USER_ERROR', `An inventory adjustment takes at most ${MAX_LINES} lines; got ${rawLines.length}.`);
        }
        const shaped = rawLines.map((raw, index) => {
            const path = `lines[${index}]`;
            if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail('INVALID_FLD_VALUE', `${path} must be an object.`);
            return {
                item: required(raw, 'itemId', `${path}.itemId`),
                location: required(raw, 'locationId', `${path}.locationId`),
                adjustQtyBy: quantity(required(raw, 'adjustQtyBy', `${path}.adjustQtyBy`), `${path}.adjustQtyBy`),
                memo: optionalText(raw, 'memo', `${path}.memo`),
            };
        });
        const subsidiaryId = refKey(subsidiaryRaw, 'subsidiary');
        const accountId = refKey(accountRaw, 'account');
        const locationId = refKey(locationRaw, 'adjlocation');
        const lines = shaped.map((line) => ({
            itemId: refKey(line.item, 'item'),
            locationId: refKey(line.location, 'location'),
            adjustQtyBy: line.adjustQtyBy,
            memo: line.memo,
        }));
        return { externalId, subsidiaryId, accountId, locationId, tranDate: date, memo, lines };
    };

    const save = (adjustment) => {
        const adj = record.create({ type: record.Type.INVENTORY_ADJUSTMENT, isDynamic: false });
        // Set the subsidiary first: NetSuite limits the accounts and locations allowed by it.
        adj.setValue({ fieldId: 'subsidiary', value: adjustment.subsidiaryId });
        adj.setValue({ fieldId: 'account', value: adjustment.accountId });
        adj.setValue({ fieldId: 'adjlocation', value: adjustment.locationId });
        adj.setValue({ fieldId: 'trandate', value: adjustment.tranDate });
        adj.setValue({ fieldId: 'memo', value: adjustment.memo });
        adj.setValue({ fieldId: 'externalid', value: adjustment.externalId });
        adjustment.lines.forEach((line, index) => {
            adj.setSublistValue({ sublistId: 'inventory', fieldId: 'item', line: index, value: line.itemId });
            adj.setSublistValue({ sublistId: 'inventory', fieldId: 'location', line: index, value: line.locationId });
            adj.setSublistValue({ sublistId: 'inventory', fieldId: 'adjustqtyby', line: index, value: line.adjustQtyBy });
            adj.setSublistValue({ sublistId: 'inventory', fieldId: 'memo', line: index, value: line.memo });
        });
        return String(adj.save({ enableSourcing: true, ignoreMandatoryFields: false }));
    };

    const caught = (e, where) => {
        const code = (e && e.name) || 'UNEXPECTED_ERROR';
        const message = (e && e.message) || String(e);
        log.error({ title: `cc_adjust ${where} failed: ${code}`, details: message });
        return { ok: false, error: { code, message } };
    };

    const post = (body) => {
        try {
            if (body === null || typeof body !== 'object' || Array.isArray(body)) {
                fail('USER_ERROR', 'The request body must be a JSON object.');
            }
            const rawExternalId = required(body, 'externalId', 'externalId');
            if (typeof rawExternalId !== 'string') fail('INVALID_FLD_VALUE', 'externalId must be a string.');
            const externalId = rawExternalId.trim();

            const existing = findByExternalId(externalId);
            if (existing) return { ok: true, id: existing, duplicate: true };

            const adjustment = validate(body, externalId);
            let id;
            try {
                id = save(adjustment);
            } catch (saveError) {
                // Two requests with one externalId can both pass the search above. NetSuite keeps
                // external ids unique, so only one save succeeds. If the adjustment now exists,
                // the other request created it: answer as a duplicate.
                const winner = findByExternalId(externalId);
                if (winner) return { ok: true, id: winner, duplicate: true };
                throw saveError;
            }
            log.audit({ title: 'cc_adjust created', details: `externalId ${externalId} -> ${id}` });
            return { ok: true, id };
        } catch (e) {
            return caught(e, 'post');
        }
    };

    const get = (params) => {
        try {
            const raw = params && params.externalId;
            const externalId = raw === undefined || raw === null ? '' : String(raw).trim();
            if (!externalId) fail('USER_ERROR', 'Please enter value(s) for: externalId');
            const id = findByExternalId(externalId);
            if (!id) {
                return {
                    ok: false,
                    error: {
                        code: 'RCRD_DSNT_EXIST',
                        message: `That record does not exist. No inventory adjustment has externalId ${externalId}.`,
                    },
                };
            }
            const adj = record.load({ type: record.Type.INVENTORY_ADJUSTMENT, id, isDynamic: false });
            const value = (fieldId, line) =>
                adj.getSublistValue({ sublistId: 'inventory', fieldId, line });
            const lines = [];
            for (let line = 0; line < adj.getLineCount({ sublistId: 'inventory' }); line += 1) {
                lines.push({
                    itemId: String(value('item', line)),
                    locationId: String(value('location', line)),
                    adjustQtyBy: Number(value('adjustqtyby', line)),
                    memo: value('memo', line) || '',
                });
            }
            return {
                ok: true,
                id,
                externalId,
                subsidiaryId: String(adj.getValue({ fieldId: 'subsidiary' })),
                accountId: String(adj.getValue({ fieldId: 'account' })),
                locationId: String(adj.getValue({ fieldId: 'adjlocation' })),
                tranDate: isoDate(adj.getValue({ fieldId: 'trandate' })),
                memo: adj.getValue({ fieldId: 'memo' }) || '',
                lines,
            };
        } catch (e) {
            return caught(e, 'get');
        }
    };

    return { get, post };
});
