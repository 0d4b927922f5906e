"""The model: a preflight that fails in one line before any sandbox starts, and a LiteLLM model that passes the
context size to Ollama and retries transient failures."""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from runner.errors import ExitCode, SmolError

if TYPE_CHECKING:
    from smolagents import LiteLLMModel

    from runner.agent.reader import OutputReader
    from runner.agent.state import RunState
    from runner.config import Settings

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
log = logging.getLogger(__name__)

RETRIES = 2


class ModelUnavailableError(SmolError):
    """The LLM endpoint cannot be reached, or the model is not there."""

    exit_code = ExitCode.MODEL


def ollama_model_name(model_id: str) -> str | None:
    provider, _, name = model_id.partition("/")
    return name if provider in ("ollama", "ollama_chat") and name else None


def preflight(settings: Settings, *, timeout: float = 5.0) -> None:
    """Check that the endpoint answers and has the model; otherwise say exactly what to run."""
    name = ollama_model_name(settings.model_id)
    if name is None:
        return  # other providers: litellm reports their errors on the first call
    base = settings.model_api_base.rstrip("/")
    try:
        with urllib.request.urlopen(f"{base}/api/tags", timeout=timeout) as response:
            payload = json.loads(response.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise ModelUnavailableError(
            f"cannot reach the model endpoint at {base} ({reason}): start Ollama (`ollama serve`, or "
            "`docker compose up -d ollama`) or set MODEL_API_BASE"
        ) from None
    available = {str(model.get("name", "")) for model in payload.get("models", [])}
    wanted = {name, f"{name}:latest"} if ":" not in name else {name}
    if not wanted & available:
        raise ModelUnavailableError(
            f"model {name} is not available at {base}: run `ollama pull {name}` "
            f"(or `docker compose exec ollama ollama pull {name}`), or set MODEL_ID"
        )


_JSON_TROUBLE = ("Expecting value", "Unterminated string", "Extra data", "JSONDecodeError", "Invalid control character")


def context_length(settings: Settings, *, timeout: float = 5.0) -> int | None:
    """The model's own context window, from Ollama's /api/show (None when it cannot be told)."""
    name = ollama_model_name(settings.model_id)
    if name is None:
        return None
    request = urllib.request.Request(f"{settings.model_api_base.rstrip('/')}/api/show",
                                     data=json.dumps({"model": name}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            info = json.loads(response.read() or b"{}").get("model_info") or {}
    except (urllib.error.URLError, OSError, ValueError):
        return None
    lengths = [value for key, value in info.items() if key.endswith(".context_length") and isinstance(value, int)]
    return lengths[0] if lengths else None


def context_warning(settings: Settings, length: int | None) -> str | None:
    """MODEL_NUM_CTX beyond what the model was trained for: Ollama accepts it, the model degrades past its window."""
    if length is not None and settings.model_num_ctx > length:
        return (f"MODEL_NUM_CTX={settings.model_num_ctx} is more than {settings.model_id}'s context length "
                f"({length}): set MODEL_NUM_CTX={length} or lower")
    return None


def explain_model_failure(error: BaseException, settings: Settings) -> str:
    """One line naming the cause and the fix, instead of LiteLLM's exception text (three nested class names)."""
    import litellm

    base = settings.model_api_base.rstrip("/")
    text = str(error)
    # LiteLLM prefixes "litellm.<Class>: <Provider>Exception - "; the server's own words are what is left.
    detail = text.split(" - ", 1)[1] if " - " in text else text.split(": ", 1)[-1]
    detail = " ".join((detail.splitlines() or [""])[0].split())[:160]  # LiteLLM may append a whole traceback
    status = getattr(error, "status_code", None)
    if isinstance(error, litellm.Timeout):
        return (f"the model at {base} gave no answer within MODEL_TIMEOUT ({settings.model_timeout:g} s): raise "
                "MODEL_TIMEOUT, or use a smaller model (--model)")
    if any(marker in text for marker in _JSON_TROUBLE):
        return (f"the server at {base} answered with something that is not Ollama's JSON: check that "
                "MODEL_API_BASE points at Ollama itself, not a proxy or a web page")
    if isinstance(error, litellm.APIConnectionError):
        return (f"cannot reach the model at {base} ({detail}): start Ollama (`ollama serve`) or set "
                "MODEL_API_BASE")
    if isinstance(error, litellm.NotFoundError):
        return (f"the model {settings.model_id} is not at {base} ({detail}): `ollama pull` it, or set MODEL_ID / "
                "--model")
    if status is not None:
        return (f"the model server at {base} answered HTTP {status} ({detail}): see its log (`ollama serve` "
                "output, or `docker compose logs ollama`)")
    return f"the model call failed ({type(error).__name__}: {detail})"


def build_model(settings: Settings, state: RunState | None = None) -> LiteLLMModel:
    import litellm
    from smolagents import LiteLLMModel

    # litellm prints "Give Feedback / Get Help" banners to stdout on errors; stdout belongs to --json.
    litellm.suppress_debug_info = True

    class RetryingModel(LiteLLMModel):
        """Retries timeouts and connection failures; other errors surface at once. With a `reader`, every answer
        is read by it (runner.agent.reader): tool calls as small models write them become calls."""

        reader: OutputReader | None = None
        gate: Callable[[], AbstractContextManager[Any]] | None = None
        """Held around each request: a batch bounds how many tasks talk to one endpoint at once (Ollama serves
        one request at a time unless OLLAMA_NUM_PARALLEL is raised; more would only queue and time out)."""

        def generate(self, *args: Any, **kwargs: Any) -> Any:
            message = self._generate(*args, **kwargs)
            if self.reader is not None and message.tool_calls:
                self._read_native(message)
            return message

        def parse_tool_calls(self, message: Any) -> Any:
            """Called by the agent when an answer holds no native call: the text is read instead."""
            from smolagents.models import MessageRole

            if self.reader is None:
                return super().parse_tool_calls(message)
            message.role = MessageRole.ASSISTANT
            reading = self.reader.read_text(str(message.content or ""))  # a ReadError's text is the model's hint
            message.tool_calls = self._calls(reading)
            return message

        def _read_native(self, message: Any) -> None:
            from runner.agent.reader import ReadError

            assert self.reader is not None
            raw = [(call.function.name, call.function.arguments) for call in message.tool_calls]
            try:
                reading = self.reader.read_native(raw)
            except ReadError:
                return  # left as it came: the agent answers an unknown tool with the list of tools
            message.tool_calls = self._calls(reading)

        def _calls(self, reading: Any) -> list[Any]:
            from opentelemetry import trace
            from smolagents.models import ChatMessageToolCall, ChatMessageToolCallFunction

            from runner.agent.reader import new_call_id

            assert self.reader is not None
            calls = list(reading.calls)
            final = self.reader.final_tool
            if len(calls) > 1 and any(call.name == final for call in calls):
                # smolagents refuses a final answer next to other calls: run the others, answer next step.
                calls = [call for call in calls if call.name != final]
                reading.repairs.append("final answer deferred until the other calls ran")
            if reading.repairs:
                self.reader.on_repair(reading.repairs)
                trace.get_current_span().set_attribute("smol.output_repairs", "; ".join(reading.repairs))
            return [ChatMessageToolCall(id=new_call_id(), type="function",
                                        function=ChatMessageToolCallFunction(name=call.name,
                                                                             arguments=call.arguments))
                    for call in calls]

        def _generate(self, *args: Any, **kwargs: Any) -> Any:
            import litellm

            transient = (litellm.Timeout, litellm.APIConnectionError, litellm.ServiceUnavailableError,
                         litellm.InternalServerError, litellm.RateLimitError)
            for attempt in range(RETRIES + 1):
                if state is not None:
                    state.model_event("start")  # the CLI shows a live "model thinking… 12 s" line
                try:
                    with self.gate() if self.gate is not None else nullcontext():
                        if state is not None and state.watching_text():
                            return self._streamed(state, *args, **kwargs)
                        return super().generate(*args, **kwargs)
                except transient as error:
                    message = explain_model_failure(error, settings)
                    if state is not None:
                        state.model_errors.append(message)
                    if attempt == RETRIES:
                        raise
                    log.warning("%s; retrying (%d of %d)", message, attempt + 1, RETRIES)
                    time.sleep(1.0 * (attempt + 1))
                finally:
                    if state is not None:
                        state.model_event("end")
            raise AssertionError("unreachable")

        def _streamed(self, watched: RunState, *args: Any, **kwargs: Any) -> Any:
            """The same answer as `generate`, read as a stream so a person watching sees the text as it comes
            (a 14B model on a laptop takes minutes per answer)."""
            from smolagents.models import agglomerate_stream_deltas

            deltas = []
            for delta in self.generate_stream(*args, **kwargs):
                deltas.append(delta)
                if delta.content:
                    watched.model_event("text", delta.content)
            return agglomerate_stream_deltas(deltas)

    extra: dict[str, Any] = {}
    if ollama_model_name(settings.model_id):
        extra["num_ctx"] = settings.model_num_ctx
    return RetryingModel(
        model_id=settings.model_id,
        api_base=settings.model_api_base,
        temperature=settings.model_temperature,
        max_tokens=settings.model_max_tokens,
        timeout=settings.model_timeout,
        # Ours is the only retry loop: smolagents' own (rate limits, 60 s waits) would multiply with it.
        retry=False,
        **extra,
    )
