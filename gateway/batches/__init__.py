"""Bulk submissions over HTTP: upload formats, intake, progress, results and rejections."""
