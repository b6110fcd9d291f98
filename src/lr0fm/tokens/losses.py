"""The LR-TK0 objective: symmetric InfoNCE between the frozen teacher's native embeddings and the student's
embedding of each view, summed over views (PAPER.md §3.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def clip_loss(teacher: torch.Tensor, student: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """½ [CE(s·T Sᵀ, I) + CE(s·S Tᵀ, I)] for unit-norm (B, D) teacher and student embeddings."""
    logits = scale * teacher @ student.T
    labels = torch.arange(len(teacher), device=teacher.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def multi_view_loss(teacher: torch.Tensor, students: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher (B, D), students (V, B, D) (raw embeddings) -> (summed loss, per-view losses (V,)), in float32."""
    teacher = F.normalize(teacher.float(), dim=-1)
    students = F.normalize(students.float(), dim=-1)
    per_view = torch.stack([clip_loss(teacher, student, scale.float()) for student in students])
    return per_view.sum(), per_view.detach()
