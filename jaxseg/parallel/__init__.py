"""Parallelism: the device mesh, FSDP and shardings, host batches as global
arrays (`sharding`); joining the hosts of a multi-host run and stopping all of
them together on SIGTERM or Ctrl-C (`distributed`)."""
