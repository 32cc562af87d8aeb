"""Strict settings for every test (equinox habit): rank promotion raises."""

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
