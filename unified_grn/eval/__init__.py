"""Checkers for the procedural worlds: GenEval-style T2I, T2V motion, C2I class, chat answers, reconstruction.

GenEval (Ghosh et al., 2023) scores text-to-image alignment by detecting the objects of a
generated image and checking them against the prompt. The shapes worlds are procedural, so the
detector here is exact (``detect``: nearest-palette labelling, connected components, shape by
template IoU, the design validated in ``shared/research/data_eval_offline.md`` §5 (c)-(d)).

- ``detect``: ``detect_objects(image) -> list[Detection]``;
- ``t2i``: ``score_t2i(image, prompt)``, ``evaluate_t2i(pairs) -> T2IReport`` (per task, per
  check, ``overall`` = mean of the task accuracies);
- ``t2v``: ``score_t2v(video, caption)``, ``evaluate_t2v(pairs) -> T2VReport`` (direction,
  persistence, smoothness);
- ``c2i``: ``score_c2i(image, label)``, ``evaluate_c2i(pairs) -> C2IReport``;
- ``chat``: ``answer_correct``, ``score_turn(prediction, turn)``, ``evaluate_chat(pairs)``;
- ``reconstruction``: ``reconstruction_metrics(originals, reconstructions)`` (PSNR, SSIM, LPIPS
  with its calibration note). Imported on demand: it pulls in torch.
- ``ceiling``: ``tokenizer_ceiling(tokenizer)``: the checkers on true test codes, decoded (on demand);
- ``conditioning``: ``condition_gap`` / ``shapes_condition_gap(model)``: how much the teacher-forced
  loss rises when the condition's shape or colour is swapped (on demand: it needs the model).
"""

from unified_grn.eval.c2i import C2IReport, C2IResult, evaluate_c2i, score_c2i
from unified_grn.eval.chat import answer_correct, evaluate_chat, normalize_answer, score_turn
from unified_grn.eval.detect import Detection, detect_objects
from unified_grn.eval.t2i import T2IReport, T2IResult, evaluate_t2i, score_t2i
from unified_grn.eval.t2v import T2VReport, T2VResult, evaluate_t2v, score_t2v

__all__ = [
    "C2IReport",
    "C2IResult",
    "Detection",
    "T2IReport",
    "T2IResult",
    "T2VReport",
    "T2VResult",
    "answer_correct",
    "detect_objects",
    "evaluate_c2i",
    "evaluate_chat",
    "evaluate_t2i",
    "evaluate_t2v",
    "normalize_answer",
    "score_c2i",
    "score_t2i",
    "score_t2v",
    "score_turn",
]
