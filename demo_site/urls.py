from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import path

from demo_site.demo import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", views.index, name="index"),
]

# Daphne does not serve static files; let Django do it for the demo (only when DEBUG is on).
urlpatterns += staticfiles_urlpatterns()
