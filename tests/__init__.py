"""The test suite: `conftest` starts real servers (Redis, PostgreSQL); helpers beside the tests
start cameras and processes; `test_layering` holds the arrows between the packages."""
