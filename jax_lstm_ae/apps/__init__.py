"""Applications of a trained model: anomaly scores, metrics and thresholds, linear probe, weight import."""

from jax_lstm_ae.apps.anomaly import Gaussian, Scorer, error_vectors, fit_gaussian, fit_scorer, ledoit_wolf_shrinkage, mahalanobis, points_from_windows, score_errors, window_overlaps
from jax_lstm_ae.apps.metrics import Threshold, as_binary_labels, best_fbeta_threshold, confusion, contamination_threshold, detection_report, f1, fbeta, mean_std_threshold, pr_auc, precision, recall, roc_auc
from jax_lstm_ae.apps.dtw import dtw_distances, nn1_predict
from jax_lstm_ae.apps.probe import CLASSIFIERS, PCA, SVM, Probe, classify, compare_representations, confusion_matrix, encode_all, fit_pca, fit_probe, fit_svm, pca_transform, probe_accuracy, probe_predict, resample, svm_predict
from jax_lstm_ae.apps.torch_port import linear_from_torch, lstm_from_torch, recurrent_autoencoder_from_torch

__all__ = [
    "CLASSIFIERS",
    "Gaussian",
    "PCA",
    "Probe",
    "SVM",
    "Scorer",
    "Threshold",
    "as_binary_labels",
    "best_fbeta_threshold",
    "classify",
    "compare_representations",
    "confusion",
    "confusion_matrix",
    "contamination_threshold",
    "detection_report",
    "dtw_distances",
    "encode_all",
    "error_vectors",
    "f1",
    "fbeta",
    "fit_gaussian",
    "fit_pca",
    "fit_probe",
    "fit_scorer",
    "fit_svm",
    "ledoit_wolf_shrinkage",
    "linear_from_torch",
    "lstm_from_torch",
    "mahalanobis",
    "mean_std_threshold",
    "nn1_predict",
    "pca_transform",
    "points_from_windows",
    "pr_auc",
    "precision",
    "probe_accuracy",
    "probe_predict",
    "recall",
    "recurrent_autoencoder_from_torch",
    "resample",
    "roc_auc",
    "score_errors",
    "svm_predict",
    "window_overlaps",
]
