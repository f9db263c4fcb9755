"""One retrying batch sender over an injectable httpx transport, shared by Customer.io delivery and the
upstream: the batches, the report, the exceptions, the rate limit and the dead letter."""

from .batch import Batch, Unsendable
from .dead_letter import DeadLetterFile
from .ratelimit import TokenBucket
from .report import SendFailed, SendHeld, SendReport, Unauthorized
from .shared_ratelimit import SharedTokenBucket, rate_limiter
from .sender import BatchSender, json_client

__all__ = ["Batch", "BatchSender", "DeadLetterFile", "SendFailed", "SendHeld", "SendReport", "SharedTokenBucket",
           "TokenBucket", "Unauthorized", "Unsendable", "json_client", "rate_limiter"]
