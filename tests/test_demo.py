"""Demo-site smoke tests, written as Django TestCases so both pytest and
`manage.py test --settings=tests.settings` run them."""

from django.test import TestCase


class DemoIndexTests(TestCase):  # the index reads the stored announcements
    def test_index_says_what_rtdelivery_is_and_links_to_admin(self) -> None:
        response = self.client.get("/")
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "rtdelivery")
        self.assertContains(response, 'href="/admin/"')
