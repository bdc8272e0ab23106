from rest_framework.routers import SimpleRouter

from inventory import apis

router = SimpleRouter()
router.register("facilities", apis.FacilityViewSet, basename="facility")
router.register("zones", apis.ZoneViewSet, basename="zone")
router.register("locations", apis.LocationViewSet, basename="location")
router.register("items", apis.ItemViewSet, basename="item")
router.register("balances", apis.BalanceViewSet, basename="balance")

urlpatterns = router.urls
