"""Draw the message-flow (sequence) diagrams of docs/protocol.md as PNG files.

Rerun after changing the protocol:

    .venv/bin/python docs/figures/make_figures.py          # writes docs/figures/*.png

Each diagram is a list of steps in a tiny language (one step per row, time flows down):

* ``("msg", src, dst, label, kind)``: an arrow; ``kind`` picks the colour
  (``app`` application message, ``order`` carries announcements, ``null`` a null
  message, ``ctrl`` recovery/control traffic, ``copy`` a pushed reply copy).
* ``("multi", src, [dst, ...], label, kind)``: one message fanned out (multicast).
* ``("exec", lane, text)``: a box on a lifeline: the replica executes something.
* ``("note", lane, text)``: a grey remark next to a lifeline.
* ``("crash", lane, text)``: the lifeline ends with a cross.
* ``("hang", lane, text)``: a cross, but the process lives on (a hung or partitioned replica).
* ``("phase", text)``: a horizontal separator with a title.

Only matplotlib is needed; output is deterministic (no dates in the PNG metadata).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

HERE = Path(__file__).resolve().parent

COLOURS = {
    "app": "#1f4e9c",  # application messages: requests, replies
    "order": "#c0392b",  # a message carrying announcements (piggybacked)
    "null": "#e67e22",  # a null message: announcements only
    "ctrl": "#6c3483",  # failure detection, recovery, views
    "copy": "#138d75",  # a pushed reply copy (nested calls)
}
LANE_W = 2.35  # inches between lifelines
ROW_H = 0.46  # inches per step


def draw(name: str, title: str, lanes: Sequence[str], steps: List[Tuple], legend: Sequence[str] = ()) -> Path:
    """Render one sequence diagram to ``docs/figures/<name>.png`` and return its path."""
    x: Dict[str, float] = {lane: i * LANE_W for i, lane in enumerate(lanes)}
    rows = len(steps) + 2
    width = LANE_W * (len(lanes) - 1) + 3.2
    height = ROW_H * rows + 1.0
    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    ax.set_xlim(-1.6, LANE_W * (len(lanes) - 1) + 1.6)
    ax.set_ylim(-(rows + 0.3) * ROW_H, 0.75)
    ax.axis("off")
    ax.set_title(title, fontsize=12.5, fontweight="bold", loc="left", pad=4)
    ended: Dict[str, float] = {}

    def y_of(row: int) -> float:
        return -(row + 1) * ROW_H

    for row, step in enumerate(steps):
        y = y_of(row)
        op = step[0]
        if op == "msg":
            _, src, dst, label, kind = step
            _arrow(ax, x[src], x[dst], y, label, COLOURS[kind], dashed=kind in ("copy",))
        elif op == "multi":
            _, src, dsts, label, kind = step
            ordered = sorted(dsts, key=lambda d: abs(x[d] - x[src]))
            for k, d in enumerate(ordered):  # a fan: one arrow per destination, visibly apart
                _arrow(ax, x[src], x[d], y, "", COLOURS[kind], drop=0.06 + 0.13 * k)
            far = max(dsts, key=lambda d: abs(x[d] - x[src]))
            mid = (x[src] + x[far]) / 2
            ax.text(mid, y + 0.07, label, ha="center", va="bottom", fontsize=8.3, color=COLOURS[kind])
        elif op == "exec":
            _, lane, text = step
            w = max(1.9, 0.072 * len(text))
            box = FancyBboxPatch((x[lane] - w / 2, y - 0.16), w, 0.32, boxstyle="round,pad=0.02",
                                 fc="#fdf2d0", ec="#9a7d0a", lw=0.8, zorder=3)
            ax.add_patch(box)
            ax.text(x[lane], y, text, ha="center", va="center", fontsize=8, zorder=4)
        elif op == "note":
            _, lane, text = step
            ax.text(x[lane] + 0.12, y, text, ha="left", va="center", fontsize=8, color="#555555", style="italic")
        elif op in ("crash", "hang"):
            _, lane, text = step
            ax.plot([x[lane]], [y], marker="X", markersize=14, color="#c0392b" if op == "crash" else "#e67e22",
                    zorder=5)
            ax.text(x[lane] + 0.2, y, text, ha="left", va="center", fontsize=8.5, color="#c0392b")
            if op == "crash":
                ended[lane] = y
        elif op == "phase":
            _, text = step
            ax.axhline(y, color="#999999", lw=0.7, ls=(0, (6, 3)))
            ax.text(-1.5, y + 0.05, text, ha="left", va="bottom", fontsize=9, fontweight="bold", color="#333333")
        else:  # pragma: no cover - a typo in a diagram
            raise ValueError(op)

    bottom = y_of(len(steps)) - 0.1
    for lane in lanes:
        ax.plot([x[lane], x[lane]], [0.2, ended.get(lane, bottom)], color="#aaaaaa", lw=1, ls="--", zorder=0)
        ax.text(x[lane], 0.45, lane, ha="center", va="center", fontsize=9.5, fontweight="bold",
                bbox=dict(boxstyle="round,pad=0.35", fc="#e8eef8", ec="#34495e", lw=1))
    if legend:
        handles = [plt.Line2D([], [], color=COLOURS[k], lw=2, label=_LEGEND[k]) for k in legend]
        ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, -0.02), ncol=len(handles),
                  fontsize=8, frameon=False)
    out = HERE / f"{name}.png"
    fig.savefig(out, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return out


_LEGEND = {
    "app": "application message",
    "order": "carries announcements",
    "null": "null message (announcements only)",
    "ctrl": "failure detection / recovery",
    "copy": "carries a reply copy (pushed)",
}


def _arrow(ax, x0: float, x1: float, y: float, label: str, colour: str, dashed: bool = False,
           drop: float = 0.06) -> None:
    ax.annotate("", xy=(x1, y - drop), xytext=(x0, y + 0.06),
                arrowprops=dict(arrowstyle="-|>", color=colour, lw=1.5, ls="--" if dashed else "-",
                                shrinkA=2, shrinkB=2), zorder=2)
    if label:
        ax.text((x0 + x1) / 2, y + 0.08, label, ha="center", va="bottom", fontsize=8.3, color=colour)


# --------------------------------------------------------------------------- diagrams


def fault_free() -> Path:
    lanes = ["client", "router g", "primary g-r0", "backup g-r1", "backup g-r2"]
    steps = [
        ("msg", "client", "router g", "Request c#1 (SYNC_REQUEST)", "app"),
        ("msg", "router g", "primary g-r0", "Deliver(requests=[c#1])", "app"),
        ("exec", "primary g-r0", "Execute pos 1: c#1"),
        ("msg", "primary g-r0", "router g", "Delivered(reply c#1, ann[1=c#1])", "order"),
        ("msg", "router g", "client", "Reply c#1 (+ ann[1])", "order"),
        ("note", "backup g-r1", "copies wait <= relay_delay_ticks to form a batch"),
        ("msg", "client", "router g", "Request c#2", "app"),
        ("msg", "router g", "primary g-r0", "Deliver([c#2])", "app"),
        ("multi", "router g", ["backup g-r1", "backup g-r2"], "Deliver(requests=[c#1, c#2], ann=[1=c#1])", "order"),
        ("exec", "backup g-r1", "Execute pos 1: c#1"),
        ("exec", "primary g-r0", "Execute pos 2: c#2"),
        ("msg", "primary g-r0", "router g", "Delivered(reply c#2, ann[2=c#2])", "order"),
        ("msg", "router g", "client", "Reply c#2", "app"),
        ("phase", "idle: nothing goes to the backups for null_message_ticks"),
        ("multi", "router g", ["backup g-r1", "backup g-r2"], "null Deliver(ann=[2=c#2])", "null"),
        ("exec", "backup g-r2", "Execute pos 2: c#2"),
    ]
    return draw("fault_free", "(a) Fault-free synchronous calls: announcements piggyback; null message only when idle",
                lanes, steps, legend=("app", "order", "null"))


def nested() -> Path:
    lanes = ["client", "router A", "primary A0", "backup A1", "router B", "primary B0", "backup B1"]
    steps = [
        ("msg", "client", "router A", "Request c#1: A.fwd()", "app"),
        ("msg", "router A", "primary A0", "Deliver([c#1])", "app"),
        ("exec", "primary A0", "Execute c#1 ..."),
        ("msg", "primary A0", "router B", "nested Request A|c#1#1 (source_view=1)", "app"),
        ("msg", "router B", "primary B0", "Deliver([A|c#1#1])", "app"),
        ("exec", "primary B0", "Execute pos 7"),
        ("msg", "primary B0", "router B", "Delivered(reply, annB[7])", "order"),
        ("msg", "router B", "primary A0", "Reply A|c#1#1 (+ annB[7])", "order"),
        ("note", "primary A0", "consumed at once, no announcement (claim 48)"),
        ("exec", "primary A0", "... c#1 done: pos 1"),
        ("msg", "primary A0", "router A", "Delivered(reply c#1, annA[1], reply_copies=[A|c#1#1])", "copy"),
        ("msg", "router A", "client", "Reply c#1", "app"),
        ("multi", "router B", ["backup B1"], "Deliver([A|c#1#1], annB[7])", "order"),
        ("msg", "router A", "backup A1", "Deliver([c#1], annA[1], reply_copies=[A|c#1#1])", "copy"),
        ("exec", "backup A1", "Execute c#1 (replay): takes the copy, no message"),
        ("phase", "A's next call to B carries B's order back (claims 66, 67)"),
        ("msg", "primary A0", "router B", "Request A|c#2#1 (peer_announcements=[annB[7]])", "order"),
        ("note", "router B", "merges annB[7]; relays to B's backups"),
    ]
    return draw("nested", "(b) Nested call A -> B: the reply copy pushed to A's backups, B's order carried back",
                lanes, steps, legend=("app", "order", "copy"))


def failover() -> Path:
    lanes = ["client", "router g", "primary g-r0", "backup g-r1", "backup g-r2"]
    steps = [
        ("msg", "client", "router g", "Request c#5", "app"),
        ("msg", "router g", "primary g-r0", "Deliver([c#5])", "app"),
        ("hang", "primary g-r0", "hangs (a dead one: ActorDiedError)"),
        ("msg", "primary g-r0", "router g", "no pong for failure_timeout_ticks", "ctrl"),
        ("note", "router g", "phase NORMAL -> RECOVERING; nothing is sent to replicas"),
        ("multi", "router g", ["backup g-r1", "backup g-r2"], "STATE_QUERY", "ctrl"),
        ("msg", "backup g-r1", "router g", "StateReport(executed=3, reqs, anns)", "ctrl"),
        ("msg", "backup g-r2", "router g", "StateReport(executed=4, reqs, anns)", "ctrl"),
        ("note", "router g", "merge requests + announcements; leader = most advanced"),
        ("multi", "router g", ["backup g-r1", "backup g-r2"], "Deliver(NewView(v2, [g-r2, g-r1]), reqs, anns)", "ctrl"),
        ("exec", "backup g-r2", "PRIMARY v2: replay announced"),
        ("exec", "backup g-r2", "then schedule c#5: pos 5"),
        ("exec", "backup g-r1", "catch up pos 4 (announced)"),
        ("msg", "backup g-r2", "router g", "Delivered(reply c#5, ann[5])", "order"),
        ("msg", "router g", "client", "Reply c#5 (exactly once)", "app"),
        ("phase", "fencing: the hung, deposed primary wakes up"),
        ("msg", "primary g-r0", "router g", "Delivered(view=1, reply ...)", "ctrl"),
        ("note", "router g", "view 1 < primary_since=2: dropped (counts['fenced'])"),
    ]
    return draw("failover", "(c) Primary failure: recovery from the survivors' state reports",
                lanes, steps, legend=("app", "order", "ctrl"))


def passive() -> Path:
    lanes = ["client", "router g", "primary g-r0", "backup g-r1"]
    steps = [
        ("msg", "client", "router g", "Requests c#1..c#3", "app"),
        ("msg", "router g", "primary g-r0", "Deliver([c#1..c#3])", "app"),
        ("exec", "primary g-r0", "Execute pos 1..3"),
        ("exec", "primary g-r0", "Snapshot (every N=3)"),
        ("msg", "primary g-r0", "router g", "Delivered(replies, ann[1..3], Checkpoint@3)", "order"),
        ("msg", "router g", "backup g-r1", "Deliver(copies, ann[1..3], Checkpoint@3)", "order"),
        ("note", "backup g-r1", "keeps checkpoint; drops log <= 3; executes nothing"),
        ("msg", "client", "router g", "Requests c#4, c#5", "app"),
        ("msg", "router g", "primary g-r0", "Deliver([c#4, c#5])", "app"),
        ("exec", "primary g-r0", "Execute pos 4, 5"),
        ("msg", "primary g-r0", "router g", "Delivered(replies, ann[4, 5])", "order"),
        ("msg", "router g", "backup g-r1", "Deliver(copies, ann[4, 5])", "order"),
        ("note", "backup g-r1", "log: 4=c#4, 5=c#5 (acked_position = 5)"),
        ("crash", "primary g-r0", "dies"),
        ("msg", "router g", "backup g-r1", "query, then NewView(v2, [g-r1])", "ctrl"),
        ("exec", "backup g-r1", "Restore Checkpoint@3"),
        ("exec", "backup g-r1", "replay log pos 4, 5"),
        ("exec", "backup g-r1", "serve c#6 at pos 6"),
    ]
    return draw("passive", "(d) Passive takeover: checkpoint every N, log, restore + replay",
                lanes, steps, legend=("app", "order", "ctrl"))


def main(argv: Sequence[str] = ()) -> int:
    for make in (fault_free, nested, failover, passive):
        print(make())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
