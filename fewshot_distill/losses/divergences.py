"""Distillation losses on the teacher's top-K vocabulary ids: a registry of pure per-row divergences.

Shapes: M = rows (answer positions), K = teacher top-K, S = support size (K, or K + 1 with the tail
bucket), V = vocabulary. Everything is computed in float32 (float64 inputs stay float64).

`distillation.loss` names an entry of `DIVERGENCES`:

    mse         mean over the K ids of (student logit - teacher logit)^2, on raw logits (the paper's)
    forward_kl  KL(teacher || student)
    reverse_kl  KL(student || teacher)
    jsd         generalized Jensen-Shannon divergence with `distillation.jsd_beta` (TRL's GKD convention)

The KL family compares two distributions on the teacher's top-K ids (`divergence_rows`):
  1. both sides' logits are divided by the temperature T (`distillation.temperature`);
  2. `distillation.topk_tail` chooses the support: `renormalize` = softmax over the K ids;
     `bucket` = K + 1 entries, the last one the mass of every other vocabulary id. Its logit is the
     log-sum-exp of the other ids' logits / T (`tail_logsumexp`): with it the K + 1 entries' softmax
     is the full-vocabulary softmax, folded. (We keep the tail's log-sum-exp rather than the full
     row's: `log(exp(full) - exp(top-K))` cancels catastrophically when the top-K hold almost all
     the mass, which is the usual case at K = 256.)
  3. the divergence is multiplied by T^2, so gradient magnitudes stay comparable across T (Hinton
     et al. 2015; as T grows, T^2 * forward KL tends to the MSE of the centred logits / 2K).
mse compares raw logits, so temperature and tail do not apply to it: T != 1 or `bucket` with mse is
a config error (T would only rescale it, i.e. duplicate lambda_distill).

Math only: nothing here knows about windows, masks or chunks (fewshot_distill/losses/window_kernel.py).

Adding a loss: write one function `(teacher [M, S], student [M, S], spec) -> [M]` below and add one
entry to `DIVERGENCES`. Its name becomes a valid `distillation.loss` (validation reads the registry),
the fused CE + distillation kernel (`fewshot_distill.losses.window_kernel.answer_window_losses`) picks it
up, and its gradient comes from autograd on the small [chunk, S] slice inside that kernel's backward. A
loss with a new hyperparameter also adds a `LossSpec` field and a config key. Test it in
tests/losses/test_divergences.py against a plain torch reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

TAIL_MODES = ("renormalize", "bucket")


@dataclass(frozen=True)
class LossSpec:
    """Which distillation loss, and its hyperparameters (the `distillation.*` keys of the same name)."""

    name: str = "mse"
    temperature: float = 1.0
    jsd_beta: float = 0.5
    topk_tail: str = "renormalize"

    def __post_init__(self) -> None:
        problem = loss_settings_problem(self.name, self.temperature, self.jsd_beta, self.topk_tail)
        if problem is not None:
            raise ValueError(problem)

    @classmethod
    def from_config(cls, distillation_cfg) -> "LossSpec":
        """The spec of a config's `distillation:` section."""
        return cls(distillation_cfg.loss, distillation_cfg.temperature, distillation_cfg.jsd_beta,
                   distillation_cfg.topk_tail)

    @property
    def divergence(self) -> "Divergence":
        return DIVERGENCES[self.name]

    @property
    def with_tail(self) -> bool:
        """True when the support has the tail bucket (each side's tail log-sum-exp is needed)."""
        return self.topk_tail == "bucket"

    @property
    def tail_temperature(self) -> float | None:
        """The temperature of the teacher's tail log-sum-exp, which only the tail bucket needs (else None)."""
        return self.temperature if self.with_tail else None


# --- the divergences: teacher / student [M, S] -> per-row loss [M] ----------------------------------

def mse(teacher: torch.Tensor, student: torch.Tensor, spec: LossSpec) -> torch.Tensor:
    """Mean over the K ids of (student - teacher)^2, on raw logits [M, K] -> [M] (the paper's loss).

    Gradient w.r.t. the student logits: 2 (student - teacher) / K.
    """
    return (student - teacher).pow(2).mean(dim=-1)


def forward_kl(teacher: torch.Tensor, student: torch.Tensor, spec: LossSpec) -> torch.Tensor:
    """KL(T || S) = sum_i p_T,i (log p_T,i - log p_S,i).  Log-probs [M, S] -> [M].

    Gradient w.r.t. the student's support logits u (student = log_softmax(u)): p_S - p_T.
    """
    return (teacher.exp() * (teacher - student)).sum(dim=-1)


def reverse_kl(teacher: torch.Tensor, student: torch.Tensor, spec: LossSpec) -> torch.Tensor:
    """KL(S || T) = sum_i p_S,i (log p_S,i - log p_T,i).  Log-probs [M, S] -> [M].

    Gradient w.r.t. u: p_S * ((log p_S - log p_T) - KL(S || T)).
    """
    return (student.exp() * (student - teacher)).sum(dim=-1)


def jsd(teacher: torch.Tensor, student: torch.Tensor, spec: LossSpec) -> torch.Tensor:
    """Generalized JSD_beta = beta KL(T || M) + (1 - beta) KL(S || M), M = beta p_T + (1 - beta) p_S.

    Log-probs [M, S] -> [M]; beta = spec.jsd_beta. This is the convention of TRL's GKD trainer
    (Agarwal et al. 2024, eq. 1). JSD_beta itself vanishes at both ends (JSD_beta ~ beta KL(T || S) as
    beta -> 0, ~ (1 - beta) KL(S || T) as beta -> 1), so, like TRL, the end points are their
    normalised limits: beta = 0 is exactly `forward_kl`, beta = 1 exactly `reverse_kl`.
    beta = 0.5 is the symmetric Jensen-Shannon divergence.

    Gradient w.r.t. u (0 < beta < 1): (1 - beta) p_S * (log(p_S / M) - KL(S || M)).
    """
    beta = spec.jsd_beta
    if beta == 0.0:
        return forward_kl(teacher, student, spec)
    if beta == 1.0:
        return reverse_kl(teacher, student, spec)
    mixture = torch.logaddexp(teacher + math.log(beta), student + math.log1p(-beta))
    return (beta * (teacher.exp() * (teacher - mixture)).sum(dim=-1)
            + (1.0 - beta) * (student.exp() * (student - mixture)).sum(dim=-1))


@dataclass(frozen=True)
class Divergence:
    """A registry entry.

    per_row: (teacher, student, spec) -> [M].
    on_log_probs: True = the inputs are log-probs on the top-K support (temperature, tail mode and
      the T^2 factor apply); False = raw logits at the teacher's ids.
    """

    per_row: Callable[[torch.Tensor, torch.Tensor, LossSpec], torch.Tensor]
    on_log_probs: bool


DIVERGENCES: dict[str, Divergence] = {
    "mse": Divergence(mse, on_log_probs=False),
    "forward_kl": Divergence(forward_kl, on_log_probs=True),
    "reverse_kl": Divergence(reverse_kl, on_log_probs=True),
    "jsd": Divergence(jsd, on_log_probs=True),
}


def loss_settings_problem(name: str, temperature: float, jsd_beta: float, topk_tail: str,
                          n_top_logits: int | None = None) -> str | None:
    """One-line description of what is wrong with these `distillation.*` settings, or None."""
    if name not in DIVERGENCES:
        return f"distillation.loss must be one of {sorted(DIVERGENCES)}, got {name!r}"
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        return f"distillation.temperature must be a finite number > 0, got {temperature!r}"
    if not (isinstance(jsd_beta, (int, float)) and 0.0 <= jsd_beta <= 1.0):
        return f"distillation.jsd_beta must be in [0, 1] (0 = forward KL, 1 = reverse KL), got {jsd_beta!r}"
    if topk_tail not in TAIL_MODES:
        return f"distillation.topk_tail must be one of {list(TAIL_MODES)}, got {topk_tail!r}"
    if not DIVERGENCES[name].on_log_probs and temperature != 1.0:
        return (f"distillation.temperature={temperature} does not apply to loss={name} (it compares raw "
                "logits; T would only rescale it): use distillation.lambda_distill, or a KL-family loss")
    if not DIVERGENCES[name].on_log_probs and topk_tail != "renormalize":
        return (f"distillation.topk_tail={topk_tail} does not apply to loss={name} (it compares raw logits): "
                "use topk_tail=renormalize, or a KL-family loss")
    if n_top_logits is not None and topk_tail == "bucket" and n_top_logits <= 0:
        return ("distillation.topk_tail=bucket needs teacher top-K ids: set distillation.n_top_logits > 0 "
                "(or topk_tail=renormalize)")
    return None


# --- the top-K support ------------------------------------------------------------------------------

def top_k_logits(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [B, A, V] -> (values [B, A, K] float32, vocab ids [B, A, K])."""
    if k > logits.size(-1):
        raise ValueError(f"n_top_logits={k} exceeds the vocabulary size {logits.size(-1)}")
    values, ids = logits.topk(k, dim=-1)
    return values.float(), ids


def tail_scaled_logits(logits: torch.Tensor, ids: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits [..., V] / T (a new float32 tensor) with -inf at the top-K ids [..., K]."""
    if ids.size(-1) >= logits.size(-1):
        raise ValueError(f"distillation.topk_tail=bucket needs n_top_logits < the vocabulary size "
                         f"{logits.size(-1)} (got {ids.size(-1)}): with every id in the top-K there is no tail")
    scaled = logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature
    return scaled.scatter_(-1, ids, float("-inf"))


def tail_logsumexp(logits: torch.Tensor, ids: torch.Tensor, temperature: float, chunk_rows: int = 256
                   ) -> torch.Tensor:
    """log sum_{v not in ids} exp(logit_v / T).  logits [..., V], ids [..., K] -> [...] float32.

    The bucket entry of the support. Computed `chunk_rows` rows at a time: never a float32 copy of
    all the logits (the teacher's answer logits are [B, A, V]).
    """
    flat_logits = logits.reshape(-1, logits.size(-1))
    flat_ids = ids.reshape(-1, ids.size(-1))
    parts = [tail_scaled_logits(flat_logits[begin: begin + chunk_rows], flat_ids[begin: begin + chunk_rows],
                                temperature).logsumexp(dim=-1)
             for begin in range(0, flat_logits.size(0), chunk_rows)]
    out = torch.cat(parts) if parts else flat_logits.new_zeros(0, dtype=torch.float32)
    return out.reshape(ids.shape[:-1])


def support_logits(top_logits: torch.Tensor, tail_lse: torch.Tensor | None, temperature: float
                   ) -> torch.Tensor:
    """Raw logits at the top-K ids [M, K] (+ tail log-sum-exp at T [M]) -> support logits [M, S].

    Renormalize (tail_lse None): logits / T. Bucket: [logits / T, tail_lse], whose softmax is the
    full-vocabulary softmax at T with every non-top-K id folded into the last entry.
    """
    scaled = top_logits / temperature
    if tail_lse is None:
        return scaled
    return torch.cat([scaled, tail_lse.unsqueeze(-1).to(scaled.dtype)], dim=-1)


def divergence_rows(teacher_top: torch.Tensor, student_top: torch.Tensor, spec: LossSpec,
                    teacher_tail: torch.Tensor | None = None, student_tail: torch.Tensor | None = None
                    ) -> torch.Tensor:
    """Per-row distillation loss.  Teacher / student raw logits at the teacher's ids [M, K] -> [M].

    teacher_tail / student_tail [M]: `tail_logsumexp` of each side at spec.temperature, needed (only)
    with topk_tail=bucket. KL family: T^2 * divergence(log_softmax of both supports).
    """
    entry = spec.divergence
    if spec.with_tail != (teacher_tail is not None) or spec.with_tail != (student_tail is not None):
        raise ValueError("topk_tail=bucket needs both sides' tail log-sum-exp, renormalize neither "
                         f"(topk_tail={spec.topk_tail}, teacher tail given: {teacher_tail is not None}, "
                         f"student tail given: {student_tail is not None})")
    if not entry.on_log_probs:
        return entry.per_row(teacher_top, student_top, spec)
    temperature = spec.temperature
    teacher = support_logits(teacher_top, teacher_tail, temperature).log_softmax(dim=-1)
    student = support_logits(student_top, student_tail, temperature).log_softmax(dim=-1)
    rows = entry.per_row(teacher, student, spec)
    return rows * (temperature * temperature) if temperature != 1.0 else rows


MSE = LossSpec()  # the paper's loss, the default
