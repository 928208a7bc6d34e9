"""Job bodies: plain functions that take a JobContext (ids, typed params, storage, progress and
cancel checks), read inputs from storage, run the trainer or inference and return an Outcome. The
queue (jobqueue.runner) claims jobs, parses their params with the kind's class and calls the body
registered for it (jobs.registry).

Importing the package loads nothing: the bot imports jobs.params (what a job is made of) and must
not load the bodies (torch and mmdet stay out of its event loop).
"""
