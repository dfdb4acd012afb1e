"""The architecture search: the loop (weights and architecture, first or second order), its
optimizers, the run that turns a config into a search folder, and its TensorBoard summaries."""
