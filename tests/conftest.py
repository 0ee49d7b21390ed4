"""Project-wide test configuration.

The real-peer machinery lives in tests/realpeer/plugin.py (fixtures `netns`, `veth_pair`, `make_veth_pair`,
`tap_device`, `make_tap_device`; the `root` marker's skip-or-fail-under-CI check; the cleanup sweeps) and
tests/realpeer/netns.py (`in_netns`, `need_program`, `open_fds`, ...). Importing the plugin's names here
registers them for every test directory.
"""

from tests.realpeer.plugin import (  # noqa: F401
    make_tap_device,
    make_veth_pair,
    netns,
    pytest_configure,
    pytest_runtest_setup,
    pytest_sessionfinish,
    pytest_sessionstart,
    tap_device,
    veth_pair,
)
