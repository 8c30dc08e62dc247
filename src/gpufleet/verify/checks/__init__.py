"""The checks ``gpufleet verify`` runs, as pytest tests (see ``gpufleet.verify.plugin``)."""
