"""The prometheus-client collector: the registry's plain counters as metric families, at scrape time.

This is the only module that imports ``prometheus_client`` (the ``metrics`` extra),
and only when ``/metrics`` is scraped.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ._catalog import METRICS
from ._registry import REGISTRY, HistogramSnapshot

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["RuntimeCollector", "exposition"]

_installed = False
_install_lock = threading.Lock()


class RuntimeCollector:
    """Yields every ``parallel_runtime_*`` family from :data:`REGISTRY` when collected."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        values = REGISTRY.collect()
        for name, info in METRICS.items():
            series = values.get(name)
            if not series:
                continue
            labels = list(info.labels)
            family: Any
            if info.type == "counter":
                family = CounterMetricFamily(name, info.help, labels=labels)
            elif info.type == "gauge":
                family = GaugeMetricFamily(name, info.help, labels=labels)
            else:
                family = HistogramMetricFamily(name, info.help, labels=labels)
            for label_values, value in sorted(series.items()):
                if isinstance(value, HistogramSnapshot):
                    buckets = []
                    total = 0
                    for bound, count in zip(
                        (*value.bounds, float("inf")), value.counts, strict=True
                    ):
                        total += count
                        buckets.append(("+Inf" if bound == float("inf") else repr(bound), total))
                    family.add_metric(list(label_values), buckets, value.sum)
                else:
                    family.add_metric(list(label_values), value)
            yield family


def exposition(accept: str | None) -> tuple[bytes, str]:
    """The scrape body and its content type (text format, or OpenMetrics if asked for).

    Raises ImportError when the ``metrics`` extra (prometheus-client) is not installed.
    """
    global _installed
    import prometheus_client
    from prometheus_client.exposition import choose_encoder

    with _install_lock:
        if not _installed:
            # The default registry: the process/platform/GC collectors and whatever the
            # application registered in the main interpreter come along in the same scrape.
            prometheus_client.REGISTRY.register(RuntimeCollector())
            _installed = True
    encoder, content_type = choose_encoder(accept or "")
    return encoder(prometheus_client.REGISTRY), content_type
