"""rtdelivery.contrib.eventstream against the real django-eventstream package."""
