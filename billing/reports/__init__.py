"""Finance reports: monthly summaries as xlsx and PDF, saved report templates, and the monthly
schedule that delivers a template's file through a notification channel.

No strawberry or starlette here: resolvers, the GET route and the scheduler task call in.
"""
