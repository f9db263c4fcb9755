"""One retrying batch sender over an injectable httpx transport, shared by Customer.io delivery and the
upstream: the batches, the report, the exceptions, the rate limit and the dead letter."""

from .batch import Batch, Unsendable
from .dead_letter import DeadLetterFile
from .ratelimit import TokenBucket
from .report import SendFailed, SendReport, Unauthorized
from .sender import BatchSender, json_client

__all__ = ["Batch", "BatchSender", "DeadLetterFile", "SendFailed", "SendReport", "TokenBucket", "Unauthorized",
           "Unsendable", "json_client"]
