"""The ``grn demo`` web page: ``index.html`` from the summary that ``demo.json`` holds.

``render_index(summary)`` returns one self-contained HTML page: inline CSS, no script, no asset
from the network; images, gifs and mp4s are linked by their paths relative to the page, so the
output folder can be moved or zipped as a whole. Every number on the page comes from the
summary (``unified_grn.demo.run_demo``), so the page and ``demo.json`` always agree.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

__all__ = ["render_index", "write_index"]

CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 1.5em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.8em; }
.time { color: #777; font-size: 0.7em; font-weight: normal; }
table { border-collapse: collapse; } td, th { padding: 0.15em 0.8em 0.15em 0; text-align: left; vertical-align: top; }
.cards { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; width: 200px; } figcaption { font-size: 0.85em; }
img.px, video.px { width: 192px; height: auto; image-rendering: pixelated; border: 1px solid #ccc; background: #eee; }
img.grid { max-width: 100%; image-rendering: pixelated; }
img.small { width: 96px; } figure.small { width: 110px; }
.ok { color: #1a7f37; font-weight: bold; } .bad { color: #c0392b; font-weight: bold; } .dim { color: #777; }
.note { background: #fff6d5; padding: 0.5em 0.8em; border-radius: 4px; }
.error { background: #fde2e1; padding: 0.5em 0.8em; border-radius: 4px; font-family: monospace; }
.chat { max-width: 640px; } .msg { margin: 0.6em 0; padding: 0.5em 0.8em; border-radius: 8px; }
.user { background: #e8f0fe; margin-right: 4em; } .assistant { background: #f1f1f1; margin-left: 4em; }
.role { font-size: 0.75em; color: #555; text-transform: uppercase; }
"""


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _verdict(ok: bool | None) -> str:
    if ok is None:
        return '<span class="dim">not scored</span>'
    return '<span class="ok">✓ correct</span>' if ok else '<span class="bad">✗ wrong</span>'


def _checks(checks: dict[str, bool | None]) -> str:
    parts = [f"{escape(k)} {'✓' if v else '✗'}" for k, v in checks.items() if v is not None]
    return ", ".join(parts)


def _img(src: str, alt: str, cls: str = "px") -> str:
    return f'<img class="{cls}" src="{escape(src)}" alt="{escape(alt)}">'


def _video(result: dict) -> str:
    gif, mp4 = escape(result["gif"]), escape(result["mp4"])
    return (
        f'<figure>{_img(result["gif"], result["prompt"])}<figcaption>gif: <a href="{gif}">{gif}</a>'
        f"</figcaption></figure>"
        f'<figure><video class="px" src="{mp4}" controls loop muted autoplay playsinline></video>'
        f'<figcaption>mp4: <a href="{mp4}">{mp4}</a></figcaption></figure>'
    )


def _motion_table(score: dict) -> str:
    rows = "".join(
        f"<tr><td>{escape(m['motion'])}</td><td>{_verdict(m['correct'])}</td>"
        f"<td>direction {'✓' if m['direction'] else '✗'}, persistence {'✓' if m['persistence'] else '✗'}, "
        f"smoothness {'✓' if m['smoothness'] else '✗'} "
        f"(direction, any shape: {'✓' if m['direction_any_shape'] else '✗'})</td>"
        f"<td>tracked {_pct(m['tracked_fraction'])}, travel {m['travel_px']} px, drift {m['drift_px']} px</td></tr>"
        for m in score["motions"]
    )
    return (
        f"<p>clip: {_verdict(score['correct'])} (no extra objects: {'✓' if score['no_extra'] else '✗'})</p>"
        f"<table>{rows}</table>"
    )


# ----------------------------------------------------------------------------- sections


def _t2i(s: dict) -> str:
    r = s["report"]
    tasks = ", ".join(f"{escape(t)} {_pct(v)}" for t, v in r["tasks"].items())
    cards = "".join(
        f"<figure>{_img(it['file'], it['prompt'])}<figcaption><b>{escape(it['prompt'])}</b> "
        f'<span class="dim">(seed {it["seed"]}, {escape(it["task"])})</span><br>{_verdict(it["correct"])}<br>'
        f'{_checks(it["checks"])}<br><span class="dim">detected: '
        f"{escape(', '.join(it['detected']) or 'nothing')}</span></figcaption></figure>"
        for it in s["items"]
    )
    return (
        f"<p>GenEval-style checker (<code>unified_grn.eval.t2i</code>): overall {_pct(r['overall'])}, "
        f"captions correct {_pct(r['prompt_accuracy'])} of {r['n']}; per task: {tasks}.</p>"
        f'<div class="cards">{cards}</div>'
    )


def _c2i(s: dict) -> str:
    r = s["report"]
    cards = "".join(
        f'<figure class="small">{_img(it["file"], it["class_name"], "px small")}<figcaption>{it["label"]}: '
        f"{escape(it['class_name'])} {'<span class=ok>✓</span>' if it['correct'] else '<span class=bad>✗</span>'}"
        f"</figcaption></figure>"
        for it in s["items"]
    )
    return (
        f"<p>Class checker (<code>unified_grn.eval.c2i</code>): accuracy {_pct(r['accuracy'])} of {r['n']} "
        f"classes; right colour {_pct(r['color_accuracy'])}, right shape {_pct(r['shape_accuracy'])}, "
        f"one object {_pct(r['single_object'])}.</p>"
        f'<p><img class="grid" src="{escape(s["grid"])}" alt="class grid" style="width: {2 * s["grid_size"][0]}px">'
        f'<br><span class="dim">columns: colours, rows: '
        f'shapes (<a href="{escape(s["grid"])}">{escape(s["grid"])}</a>)</span></p>'
        f'<div class="cards">{cards}</div>'
    )


def _t2v(s: dict) -> str:
    return (
        f"<p>Prompt <b>{escape(s['prompt'])}</b> (seed {s['seed']}, {s['num_frames']} frames), motion "
        f"checker (<code>unified_grn.eval.t2v</code>):</p>{_motion_table(s['score'])}"
        f'<div class="cards">{_video(s)}</div>'
    )


def _i2v(s: dict) -> str:
    first = f"<figure>{_img(s['input'], 'first frame')}<figcaption>input first frame</figcaption></figure>"
    return (
        f"<p>Prompt <b>{escape(s['prompt'])}</b> from a rendered first frame (seed {s['seed']}, "
        f"{s['num_frames']} frames), scored by the motion checker:</p>{_motion_table(s['score'])}"
        f'<div class="cards">{first}{_video(s)}</div>'
    )


def _chat(s: dict) -> str:
    msgs = []
    for m in s["transcript"]:
        parts = [
            _img(c["file"], "image")
            if c["type"] == "image"
            else escape(c["text"]) or '<i class="dim">(empty)</i>'
            for c in m["content"]
        ] or ['<i class="dim">(no reply)</i>']
        score = ""
        if "score" in m:
            sc = m["score"]
            if sc.get("caption"):
                want = f"checked against: {escape(sc['caption'])}"
            elif sc.get("answer"):
                want = f"expected: {escape(sc['answer'])}"
            else:
                want = "no expected answer (no image was drawn)"
            score = f'<div class="dim">{escape(sc["kind"])} — {want} — {_verdict(sc["correct"])}</div>'
        msgs.append(
            f'<div class="msg {m["role"]}"><div class="role">{m["role"]}</div>{"<br>".join(parts)}{score}</div>'
        )
    r = s.get("report") or {}
    head = (
        f"<p>Chat checker (<code>unified_grn.eval.chat</code>): {escape(s['summary'])}; text answers "
        f"{_pct(r.get('accuracy'))}, drawn images {_pct(r.get('image_accuracy'))}. The count question's "
        f"expected answer is what the detector finds in the drawn image.</p>"
    )
    return head + f'<div class="chat">{"".join(msgs)}</div>'


RENDERERS = {"t2i": _t2i, "c2i": _c2i, "t2v": _t2v, "i2v": _i2v, "chat": _chat}


def _section(number: int, name: str, s: dict) -> str:
    title = (
        f'<h2 id="{name}">{number}. {escape(s["title"])} <span class="time">{s["wall_s"]:.1f} s</span></h2>'
    )
    if s["status"] == "skipped":
        return f'{title}<p class="note">skipped: {escape(s["note"])}</p>'
    if s["status"] == "error":
        return f'{title}<p class="error">failed: {escape(s["error"])} (the traceback is in the log)</p>'
    return title + RENDERERS[name](s)


def _header(summary: dict) -> str:
    m, st = summary["model"], summary["settings"]
    rows: list[tuple[str, Any]] = [
        (
            "model",
            f"<b>{escape(m['name'])}</b> ({escape(m['path'])}), {m['parameters'] / 1e6:.2f}M parameters",
        ),
        ("image size", f"{m['image_size'][0]}x{m['image_size'][1]} px"),
        ("refinement steps", st["num_steps"]),
        ("seed", st["seed"]),
        ("quick", "yes" if st["quick"] else "no"),
        ("device", f"{escape(st['device'])}, {st['torch_threads']} torch threads"),
        ("wall time", f"{summary['total_wall_s']:.1f} s in all, model load {summary['load_s']:.1f} s"),
        ("created", escape(summary["created"])),
    ]
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    nav = " · ".join(
        f'<a href="#{name}">{escape(s["title"])}</a> <span class="dim">'
        f"{escape(s.get('summary', s['status']))}, {s['wall_s']:.1f} s</span>"
        for name, s in summary["sections"].items()
    )
    return f'<h1>GRN demo</h1><table>{table}</table><p>{nav}</p><p>All numbers: <a href="demo.json">demo.json</a>.</p>'


def render_index(summary: dict) -> str:
    """The page for a ``run_demo`` summary (see the module docstring)."""
    body = "".join(_section(i + 1, name, s) for i, (name, s) in enumerate(summary["sections"].items()))
    title = f"GRN demo: {escape(summary['model']['name'])}"
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
        f"<style>{CSS}</style>\n</head>\n<body>\n{_header(summary)}\n{body}\n</body>\n</html>\n"
    )


def write_index(summary: dict, path: str | Path) -> Path:
    """Write ``render_index(summary)`` to ``path`` (UTF-8); return the path."""
    path = Path(path)
    path.write_text(render_index(summary), encoding="utf-8")
    return path
