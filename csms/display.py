"""Texts for drivers' displays (block O): the site's energy prices ahead, and a place in
the queue, in English or Chinese. Pure: the prices and the time are passed in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

MAX_CONTENT = 512  # MessageContentType.content maxLength

BAND_ZH = {"peak": "峰", "valley": "谷", "flat": "平", "shoulder": "平", "offpeak": "谷",
           "off-peak": "谷", "critical": "尖峰", "sharp": "尖峰", "super-peak": "尖峰"}
CURRENCY_ZH = {"CNY": "元", "RMB": "元"}
# Chinese punctuation is full width on purpose (ruff RUF001 would have it ASCII)
ZH_OPEN, ZH_CLOSE, ZH_COLON, ZH_SEMI, ZH_COMMA = "\uff08", "\uff09", "\uff1a", "\uff1b", "\uff0c"


@dataclass(frozen=True)
class PriceSlot:
    start: datetime
    end: datetime
    price: float
    band: str | None


def _segments(slots: Sequence[PriceSlot], now: datetime, until: datetime
              ) -> list[tuple[datetime, datetime, float, str | None]]:
    """Consecutive slots at one price merged, clipped to [now, until)."""
    out: list[tuple[datetime, datetime, float, str | None]] = []
    for s in slots:
        if s.end <= now or s.start >= until:
            continue
        start, end = max(s.start, now), min(s.end, until)
        if out and out[-1][2] == s.price and out[-1][1] == start:
            out[-1] = (out[-1][0], end, s.price, out[-1][3])
        else:
            out.append((start, end, s.price, s.band))
    return out


def tariff_message(slots: Sequence[PriceSlot], currency: str, utc_offset: timedelta,
                   now: datetime, language: str, hours: int) -> tuple[str, datetime]:
    """The prices from now for `hours`, as one display text (at most 512 characters), and
    when it stops being true (the end of what it describes)."""
    until = now + timedelta(hours=hours)
    segments = _segments(slots, now, until)
    if not segments:
        raise ValueError("no prices for the coming hours")

    def hhmm(t: datetime) -> str:
        return (t + utc_offset).strftime("%H:%M")

    parts: list[str] = []
    if language == "zh":
        unit = CURRENCY_ZH.get(currency, currency) + "/千瓦时"
        for i, (a, b, price, band) in enumerate(segments):
            when = f"现在至{hhmm(b)}" if i == 0 else f"{hhmm(a)}-{hhmm(b)}"
            zh_band = BAND_ZH.get((band or "").lower(), band)
            name = f"{ZH_OPEN}{zh_band}{ZH_CLOSE}" if band else ""
            parts.append(f"{when} {price:.2f}{unit}{name}")
        head, sep = "电价" + ZH_COLON, ZH_SEMI
    else:
        unit = f"{currency}/kWh"
        for i, (a, b, price, band) in enumerate(segments):
            when = f"now to {hhmm(b)}" if i == 0 else f"{hhmm(a)}-{hhmm(b)}"
            name = f" ({band})" if band else ""
            parts.append(f"{when} {price:.2f} {unit}{name}")
        head, sep = "Energy price: ", "; "
    text = head
    for i, part in enumerate(parts):
        candidate = text + (sep if i else "") + part
        if len(candidate) > MAX_CONTENT:
            # cut before the segment that does not fit: the message then ends there
            return text, segments[i][0]
        text = candidate
    return text, until


def queue_message(position: int, language: str) -> str:
    """A driver's place in the queue for a charger (1: next)."""
    if language == "zh":
        wait = f"{ZH_COMMA}请稍候。"
        return "您是下一位" + wait if position == 1 else f"您前面还有{position - 1}位" + wait
    if position == 1:
        return "You are next in the queue. Please wait."
    return f"You are number {position} in the queue ({position - 1} ahead of you)."
