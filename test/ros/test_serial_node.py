"""The tracker node without computing ahead (``node.pipeline: false``: the same stream, its step computing the
embedding and the pair; on by default), over real DDS. Its own module, so that only this node is running on the
topics while it is tested."""

from __future__ import annotations

import pytest

from .conftest import connected_probe, node_process
from .test_node import _bad_input_round

pytestmark = pytest.mark.usefixtures("ros")


@pytest.fixture(scope="module")
def serial_node(ros, tmp_path_factory):
    yield from node_process(tmp_path_factory.mktemp("serial") / "tracker.log", "-p", "node.pipeline:=false")


@pytest.fixture(scope="module")
def serial_probe(serial_node):
    yield from connected_probe(serial_node, "serial_probe")


def test_bad_input_is_counted_and_the_serial_node_keeps_answering(serial_probe, serial_node):
    _bad_input_round(serial_probe, serial_node, pipelined=False)
