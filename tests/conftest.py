import eventlet

eventlet.monkey_patch()  # noqa: E402  (nameko >= 2.13 leaves this to the caller)

import warnings  # noqa: E402

import pytest  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)

from tacoord.testing import Sandbox, stack_problem  # noqa: E402

import services  # noqa: E402

# Every event type's schema registered up front, whichever tests run: the
# envelope registry is per process, and a test must not pass alone and fail
# in the full run (or the reverse) because another module registered more.
services.register_schemas()


@pytest.fixture(scope="session")
def stack():
    problem = stack_problem()
    if problem:
        pytest.fail(problem, pytrace=False)


@pytest.fixture
def sandbox(stack):
    box = Sandbox()
    yield box
    box.close()


@pytest.fixture
def start(sandbox, container_factory):
    """Start services in-process: ``start(NeedsService, AuditService)``."""
    def starter(*service_classes, **overrides):
        containers = []
        for cls in service_classes:
            container = container_factory(cls, sandbox.config(cls.name, **overrides))
            container.start()
            containers.append(container)
        return containers
    return starter
