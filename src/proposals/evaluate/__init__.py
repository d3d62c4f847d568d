"""Retrieval quality: labelled questions in, recall@k, precision@k, MRR and nDCG per search
mode and per question type out (``proposals eval retrieval QUESTIONS_FILE``)."""

from ._metrics import ndcg_at_k, precision_at_k, recall_at_k, reciprocal_rank
from ._questions import Question, load_questions, parse_questions
from ._retrieval import MODES, ModeScores, QuestionScores, RetrievalReport, evaluate_retrieval

__all__ = [
    "MODES",
    "ModeScores",
    "Question",
    "QuestionScores",
    "RetrievalReport",
    "evaluate_retrieval",
    "load_questions",
    "ndcg_at_k",
    "parse_questions",
    "precision_at_k",
    "recall_at_k",
    "reciprocal_rank",
]
