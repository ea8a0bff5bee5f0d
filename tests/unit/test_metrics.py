"""The /metrics text: Prometheus' exposition format, and nothing a customer could be read from."""

from __future__ import annotations

from streams.runtime.metrics import Metrics


def test_counters_and_gauges_render_in_the_text_format() -> None:
    metrics = Metrics()
    metrics.inputs.inc("clarion.account-events", "accepted")
    metrics.inputs.inc("clarion.account-events", "accepted")
    metrics.decisions.inc("sent", "sms", "first_step")
    metrics.decisions.inc("stopped", "", "stop_reply")
    metrics.gauge("clarion_pending_timers", "Timers this worker holds.", lambda: 12)
    metrics.gauge("clarion_ready", "Ready.", lambda: False)
    text = metrics.render()
    assert text.endswith("\n")
    lines = text.splitlines()
    assert "# TYPE clarion_inputs_total counter" in lines
    assert 'clarion_inputs_total{topic="clarion.account-events",outcome="accepted"} 2' in lines
    assert 'clarion_decisions_total{action="sent",channel="sms",reason="first_step"} 1' in lines
    assert 'clarion_decisions_total{action="stopped",channel="",reason="stop_reply"} 1' in lines
    assert "# TYPE clarion_pending_timers gauge" in lines
    assert "clarion_pending_timers 12" in lines
    assert "clarion_ready 0" in lines
    # A counter with nothing counted yet still says what it is.
    assert "# TYPE clarion_dead_letters_total counter" in lines


def test_label_values_are_escaped() -> None:
    metrics = Metrics()
    metrics.dead_letters.inc('a"b\\c\nd')
    assert 'clarion_dead_letters_total{code="a\\"b\\\\c\\nd"} 1' in metrics.render()
    assert metrics.dead_letters.value('a"b\\c\nd') == 1


def test_timer_lateness_is_a_cumulative_histogram() -> None:
    metrics = Metrics()
    for seconds in (0.05, 0.3, 0.3, 4.0, 120.0):
        metrics.lateness.observe(seconds)
    lines = metrics.render().splitlines()
    assert "# TYPE clarion_timer_lateness_seconds histogram" in lines
    assert 'clarion_timer_lateness_seconds_bucket{le="0.1"} 1' in lines
    assert 'clarion_timer_lateness_seconds_bucket{le="0.5"} 3' in lines
    assert 'clarion_timer_lateness_seconds_bucket{le="5"} 4' in lines
    assert 'clarion_timer_lateness_seconds_bucket{le="60"} 4' in lines
    assert 'clarion_timer_lateness_seconds_bucket{le="+Inf"} 5' in lines
    assert "clarion_timer_lateness_seconds_count 5" in lines
    assert "clarion_timer_lateness_seconds_sum 124.65" in lines


def test_labelled_gauges_render_a_line_per_label_set_in_order() -> None:
    metrics = Metrics()
    lag = {("clarion.account-events", "1"): 7.0, ("clarion.account-events", "0"): 0.0}
    metrics.gauges("clarion_consumer_lag", "Lag.", ("topic", "partition"), lambda: lag)
    metrics.gauges("clarion_circuit_state", "Breakers.", ("provider",), dict)
    lines = metrics.render().splitlines()
    start = lines.index("# HELP clarion_consumer_lag Lag.")
    assert lines[start:] == [
        "# HELP clarion_consumer_lag Lag.",
        "# TYPE clarion_consumer_lag gauge",
        'clarion_consumer_lag{topic="clarion.account-events",partition="0"} 0',
        'clarion_consumer_lag{topic="clarion.account-events",partition="1"} 7',
        # A gauge with no label sets yet still says what it is.
        "# HELP clarion_circuit_state Breakers.",
        "# TYPE clarion_circuit_state gauge",
    ]
