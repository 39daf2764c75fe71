from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from demo_site.demo import dashboard_views, eventstream_views, harness, views
from rtdelivery.ops.metrics import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    # Prometheus scrapes: a staff session or RTDELIVERY["METRICS_TOKENS"] (docs/operations.md).
    path("metrics", metrics_view, name="metrics"),
    path("rt/", include("rtdelivery.urls")),
    path("", views.index, name="index"),
    path("chat/", views.chat, name="chat"),
    path("chat/<slug:slug>/", views.room, name="room"),
    path("chat/<slug:slug>/send", views.send_message, name="send-message"),
    path("feed/", views.feed, name="feed"),
    path("dashboard/", dashboard_views.dashboard, name="dashboard"),
    path("dashboard/rate", dashboard_views.rate, name="dashboard-rate"),
    path("dashboard/probe", dashboard_views.probe, name="dashboard-probe"),
    path("signup/", views.signup, name="signup"),
    path("guest/", views.guest_login, name="guest-login"),
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="demo/login.html"),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(next_page="/"), name="logout"),
    path("client-harness/", harness.harness, name="client-harness"),
    # A django-eventstream channel served through rtdelivery's bridge (demo/eventstream.html).
    path("eventstream/", eventstream_views.page, name="eventstream"),
    path("eventstream/send", eventstream_views.send, name="eventstream-send"),
    path(
        "eventstream/events/",
        include("rtdelivery.contrib.eventstream.urls"),
        {"channels": [eventstream_views.CHANNEL]},
    ),
    # Browsers that ignore <link rel="icon"> ask for /favicon.ico.
    path("favicon.ico", RedirectView.as_view(url=static("demo/favicon.svg"), permanent=True)),
]

# Daphne does not serve static files; let Django do it for the demo (only when DEBUG is on).
urlpatterns += staticfiles_urlpatterns()
