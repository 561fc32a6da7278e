"""
The greeter module's own tests, written with FakeOrchestrator.

    trial examples.greeter.test_module
"""

from twisted.trial.unittest import SynchronousTestCase

from examples.greeter.module import create_app
from pywatt_twisted.testing import FakeOrchestrator


class GreeterTests(SynchronousTestCase):
    def test_greets_with_the_secret_and_follows_rotation(self) -> None:
        orch = FakeOrchestrator(secrets={"GREETING": "Hello"})
        module = self.successResultOf(orch.start(create_app))
        response = self.successResultOf(module.request("GET", "/greet/ada"))
        self.assertEqual(response.json(), {"message": "Hello, ada!", "rotations": 0})
        self.successResultOf(orch.rotate({"GREETING": "Hej"}))
        response = self.successResultOf(module.request("GET", "/greet/ada"))
        self.assertEqual(response.json(), {"message": "Hej, ada!", "rotations": 1})
        self.assertEqual([a.status for a in orch.acks], ["success"])
