"""The run engine: reflect, score and decide every sample of a dataset, resumably.

One module, one job: `vocabulary` names the states, `repository` owns the run's SQL, `context`
gathers what a run needs before it starts, `protocols` are the seams (a reflector, a scorer),
`method` is the per-sample method, `progress` counts, `scoring_queue` feeds the student thread
and `engine` drives the workers. `srt_local.pipeline` re-exports the public names.
"""
