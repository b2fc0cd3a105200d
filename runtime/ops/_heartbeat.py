"""Moved to :mod:`runtime._heartbeat` (core: the hub stamps one); kept for the ops modules' imports."""

from .._heartbeat import Heartbeat as Heartbeat
