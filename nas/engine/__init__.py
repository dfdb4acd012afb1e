"""The machinery search and retrain share: device and seeding, RNG state, atomic checkpoints,
progress and TensorBoard, meters and the finite-loss check, the run folder with its checkpoint
and resume checks (:mod:`nas.engine.run_folder`)."""
