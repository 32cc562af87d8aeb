"""Applications of a trained model: anomaly scores, metrics and thresholds, linear probe, weight import."""

from jax_lstm_ae.apps.anomaly import Gaussian, Scorer, error_vectors, fit_gaussian, fit_scorer, ledoit_wolf_shrinkage, mahalanobis, points_from_windows, score_errors, window_overlaps
from jax_lstm_ae.apps.metrics import Threshold, as_binary_labels, best_fbeta_threshold, confusion, contamination_threshold, detection_report, f1, fbeta, mean_std_threshold, pr_auc, precision, recall, roc_auc
from jax_lstm_ae.apps.probe import PCA, Probe, compare_representations, confusion_matrix, encode_all, fit_pca, fit_probe, pca_transform, probe_accuracy, probe_predict
from jax_lstm_ae.apps.keras_port import dense_from_keras, embedding_from_keras, lstm_from_keras, sequential_from_keras
from jax_lstm_ae.apps.torch_port import embedding_from_torch, linear_from_torch, lstm_from_torch, recurrent_autoencoder_from_torch, token_encoder_from_torch

__all__ = [
    "Gaussian",
    "PCA",
    "Probe",
    "Scorer",
    "Threshold",
    "as_binary_labels",
    "best_fbeta_threshold",
    "compare_representations",
    "confusion",
    "confusion_matrix",
    "contamination_threshold",
    "dense_from_keras",
    "detection_report",
    "embedding_from_keras",
    "embedding_from_torch",
    "encode_all",
    "error_vectors",
    "f1",
    "fbeta",
    "fit_gaussian",
    "fit_pca",
    "fit_probe",
    "fit_scorer",
    "ledoit_wolf_shrinkage",
    "linear_from_torch",
    "lstm_from_keras",
    "lstm_from_torch",
    "mahalanobis",
    "mean_std_threshold",
    "pca_transform",
    "points_from_windows",
    "pr_auc",
    "precision",
    "probe_accuracy",
    "probe_predict",
    "recall",
    "recurrent_autoencoder_from_torch",
    "roc_auc",
    "score_errors",
    "sequential_from_keras",
    "token_encoder_from_torch",
    "window_overlaps",
]
