"""Process plumbing: the warm interpreter that stages fork from, the local team stack, service helpers.

Nothing here changes what a stage computes, so dvc.yaml does not list these modules as stage dependencies.
"""
