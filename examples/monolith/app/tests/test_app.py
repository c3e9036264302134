"""The monolith's own test suite: run by `stackctl exec tests` in a one-off container of the
app's image on the stage network (the database and Redis are reached by their service
names), against the stage that `stackctl up` brought up and migrated."""
import unittest

from webapp import app
from migrations import MIGRATIONS


class AppTest(unittest.TestCase):
    def setUp(self):
        self.client = app.test_client()

    def test_health_reaches_the_database_and_redis(self):
        response = self.client.get("/health")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.get_json(), {"status": "ok"})

    def test_every_migration_ran(self):
        status = self.client.get("/api/status").get_json()
        self.assertEqual(status["pending"], [])
        self.assertEqual(status["migrations"], [name for name, _ in MIGRATIONS])

    def test_the_page_lists_the_articles_of_the_dump(self):
        response = self.client.get("/")
        self.assertEqual(response.status_code, 200)
        page = response.get_data(as_text=True)
        self.assertIn("Welcome to the monolith", page)
        self.assertIn("welcome-to-the-monolith", page)

    def test_static_files_are_collected(self):
        self.assertEqual(self.client.get("/static/app/site.css").status_code, 200)


if __name__ == "__main__":
    unittest.main()
