"""The simulated AWS for --sandbox and the tests (moto), and its drift injector."""
