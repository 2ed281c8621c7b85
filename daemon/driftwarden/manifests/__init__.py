"""Manifests: files in, validated frozen model out (loader, schemas, validation, model, Astro files)."""
