"""Roll-ups: closed machine-hours materialised in a SQL database, so a month answers in well under a second.

They are a cache (DESIGN.md, Analytics): exact (equal to computing from raw), rebuilt when data arrives late for a
closed hour, deletable at no cost but time. store.py keeps them, plan.py decides what to build (pure), job.py builds.
"""
