"""Counting a flow matcher's DIS calls, and the threads they ran in (stream and pair-ahead tests)."""

from __future__ import annotations

import threading

import cv2


class CountingDis:
    """Stands in for a flow matcher's DIS object: counts ``calc`` calls by the thread they ran in."""

    def __init__(self, dis):
        self.dis = dis
        self.threads: list[str] = []

    def calc(self, *args):
        self.threads.append(threading.current_thread().name)
        return self.dis.calc(*args)


def count_flow(matcher):
    """Wrap both DIS objects of a flow matcher (its own and the one for pairs computed ahead); returns it."""
    matcher._dis = CountingDis(matcher._dis)
    matcher._ahead_dis = CountingDis(cv2.DISOpticalFlow_create(matcher._preset))
    return matcher
