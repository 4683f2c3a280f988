# Bitwise-exact --resume, inherited by every top-level config: the random generators travel
# with each checkpoint (mmhire.RNGStateHook).
custom_hooks = [dict(type='RNGStateHook')]

# Epoch-based loops restart their dataloader workers every epoch: seeded from the restored main
# generator, they continue where the interrupted run would have. (Persistent workers would
# keep generator state that no checkpoint can hold.) Those configs set
#   train_dataloader = _base_.exact_resume_train_dataloader
exact_resume_train_dataloader = dict(persistent_workers=False,
                                     worker_init_fn=dict(type='seed_worker_from_torch'))
