"""A local voice agent with a speaking portrait: pipecat + PirenderAvatar, no hosted service.

    python examples/pipecat_agent/bot.py            # then open http://127.0.0.1:7870
    make pipecat-example                            # the same

The page (index.html beside this file) sends your microphone to the bot over WebRTC (pipecat's
aiortc-based SmallWebRTC transport, loopback only, no STUN server) and shows the avatar the bot sends
back. The pipeline::

    transport.input() -> VADProcessor(Silero) -> ScriptedBrain -> EspeakTTSService
        -> PirenderAvatar -> transport.output()

- **Ears**: Silero VAD (its ONNX model ships inside pipecat) tells when you start and stop speaking
  (a turn ends after 0.6 s of silence).
- **Brain**: a stand-in (:class:`ScriptedBrain`): no speech-to-text or language model can be
  downloaded here, so when you stop speaking the bot says the next line of a short script (or the
  time). When you start speaking while it talks, it is interrupted (barge-in).
- **Voice**: espeak-ng (:class:`EspeakTTSService`, a pipecat ``TTSService`` running ``espeak-ng
  --stdout`` in a subprocess), 22.05 kHz resampled by pipecat to the pipeline's 24 kHz.
- **Face**: :class:`~pirender.engine.agents.pipecat.PirenderAvatar` turns the voice into video frames
  at 25 fps, holding the audio back to match the lips.

**Real STT and LLM services** replace the brain (pipecat ships them; each needs its own extra and
models or keys), e.g. a local Whisper and Ollama::

    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
    from pipecat.services.ollama.llm import OLLamaLLMService
    from pipecat.services.whisper.stt import WhisperSTTService

    stt = WhisperSTTService()                                  # pip install "pipecat-ai[whisper]"
    llm = OLLamaLLMService(model="llama3.2")                   # a local Ollama server
    context = LLMContextAggregatorPair(LLMContext([{"role": "system", "content": "Be brief."}]))
    pipeline = Pipeline([transport.input(), stt, context.user(), llm, tts, avatar,
                         transport.output(), context.assistant()])

(the user aggregator then runs the VAD and the interruptions; check the names against your
pipecat version: they move between releases).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import logging
import shutil
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_PORT = 7870
SCRIPT = (
    "Hello! I am a portrait that speaks. Say something, and I will answer with the next line of my script.",
    "Nice to hear you. My lips follow my voice: the sound is held back a little so that both arrive "
    "together.",
    "You can interrupt me at any time. Just start talking while I speak, and I stop at once.",
    "Everything here runs on this computer: the voice detector, the speech synthesiser and my face.",
    "That was my whole script. I will tell you the time instead from now on.",
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="A local voice agent with a speaking portrait (pipecat + PirenderAvatar, espeak-ng); "
        "serves a page on 127.0.0.1 that talks to it over WebRTC.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="bind address (loopback only; default %(default)s)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="HTTP port (default %(default)s)")
    parser.add_argument("--portrait", help="portrait image (default: the embedded Grace Hopper)")
    parser.add_argument("--renderer", default="mesh", help="mesh or neural (default %(default)s)")
    parser.add_argument("--size", type=int, default=256, help="video size in pixels (default %(default)s)")
    parser.add_argument(
        "--device", default="cpu", help="where the neural renderer runs: cpu, cuda (default %(default)s)"
    )
    parser.add_argument(
        "--fps", type=float, default=25.0, help="video frames per second (default %(default)s)"
    )
    parser.add_argument("--voice", default="en-us", help="espeak-ng voice (default %(default)s)")
    parser.add_argument(
        "--words-per-minute", type=int, default=160, help="espeak-ng speed (default %(default)s)"
    )
    parser.add_argument(
        "--greeting", default=SCRIPT[0], help="what the bot says when you connect (empty: nothing)"
    )
    return parser.parse_args(argv)


# -- the pipeline's pieces (pipecat is imported in main, after --help) ---------------------------------


def build_pieces() -> dict[str, Any]:
    """The example's pipecat classes (defined here so that ``--help`` works without pipecat)."""
    from pipecat.frames.frames import (
        Frame,
        TTSSpeakFrame,
        VADUserStartedSpeakingFrame,
        VADUserStoppedSpeakingFrame,
    )
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.services.settings import TTSSettings
    from pipecat.services.tts_service import TTSService

    class EspeakTTSService(TTSService):
        """Speech from espeak-ng (``espeak-ng --stdout``: a 22.05 kHz WAV stream), read as it is made."""

        def __init__(self, *, voice: str = "en-us", words_per_minute: int = 160, **kwargs: Any) -> None:
            settings = TTSSettings(model=None, voice=voice, language=None)
            super().__init__(
                push_start_frame=True,
                push_stop_frames=True,
                stop_frame_timeout_s=0.5,
                settings=settings,
                **kwargs,
            )
            if shutil.which("espeak-ng") is None:
                raise SystemExit("espeak-ng is not installed (apt install espeak-ng)")
            self._voice, self._wpm = voice, words_per_minute

        def can_generate_metrics(self) -> bool:
            return True

        async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
            process = await asyncio.create_subprocess_exec(
                "espeak-ng", "--stdout", "-v", self._voice, "-s", str(self._wpm),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(text.encode())  # the text on stdin: never read as options
            process.stdin.close()
            stdout = process.stdout

            async def wav_bytes() -> AsyncIterator[bytes]:
                while chunk := await stdout.read(8192):
                    yield chunk

            try:
                await self.start_tts_usage_metrics(text)
                async for frame in self._stream_audio_frames_from_iterator(
                    wav_bytes(), strip_wav_header=True, context_id=context_id
                ):
                    await self.stop_ttfb_metrics()
                    yield frame
            finally:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()

    class ScriptedBrain(FrameProcessor):
        """Stands in for STT + LLM: the next line of a script each time the user stops speaking; the
        user starting to speak interrupts the bot (barge-in)."""

        def __init__(self, lines: Sequence[str]) -> None:
            super().__init__()
            self._lines = list(lines)
            self._line = 1  # line 0 is the greeting

        def next_line(self) -> str:
            if self._line < len(self._lines):
                line = self._lines[self._line]
                self._line += 1
                return line
            return f"It is {datetime.datetime.now():%H:%M} here."

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            await self.push_frame(frame, direction)
            if direction is FrameDirection.DOWNSTREAM and isinstance(frame, VADUserStartedSpeakingFrame):
                await self.broadcast_interruption()  # stops the voice and the avatar's mouth at once
            elif direction is FrameDirection.DOWNSTREAM and isinstance(frame, VADUserStoppedSpeakingFrame):
                await self.push_frame(TTSSpeakFrame(self.next_line()))

    return {
        "EspeakTTSService": EspeakTTSService,
        "ScriptedBrain": ScriptedBrain,
        "TTSSpeakFrame": TTSSpeakFrame,
    }


async def run_bot(connection: Any, assets: Any, args: argparse.Namespace, pieces: dict[str, Any]) -> None:
    """One visitor's session: the pipeline on ``connection`` until the visitor leaves."""
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.audio.vad.vad_analyzer import VADParams
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.audio.vad_processor import VADProcessor
    from pipecat.transports.base_transport import TransportParams
    from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
    from pipecat.workers.runner import WorkerRunner

    from pirender.engine.agents.pipecat import PirenderAvatar

    config = assets.config
    transport = SmallWebRTCTransport(
        webrtc_connection=connection,
        params=TransportParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            video_out_enabled=True,
            video_out_is_live=False,  # each image stays up until the next; sync_with_audio images
            video_out_width=config.size_px,  # are shown once the audio before them has played
            video_out_height=config.size_px,
            video_out_framerate=config.fps,
        ),
    )
    avatar = PirenderAvatar(assets=assets)
    pipeline = Pipeline(
        [
            transport.input(),
            VADProcessor(vad_analyzer=SileroVADAnalyzer(params=VADParams(stop_secs=0.6))),
            pieces["ScriptedBrain"](SCRIPT),
            pieces["EspeakTTSService"](voice=args.voice, words_per_minute=args.words_per_minute),
            avatar,
            transport.output(),
        ]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=16000, audio_out_sample_rate=24000),
        enable_rtvi=False,
        cancel_on_idle_timeout=False,
    )

    @transport.event_handler("on_client_connected")
    async def on_connected(_transport: Any, _client: Any) -> None:
        if args.greeting:
            await worker.queue_frames([pieces["TTSSpeakFrame"](args.greeting)])

    @transport.event_handler("on_client_disconnected")
    async def on_disconnected(_transport: Any, _client: Any) -> None:
        await worker.cancel()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()
    stats = avatar.stats

    def median(values: Any) -> float:
        ordered = sorted(values)
        return ordered[len(ordered) // 2] if ordered else float("nan")

    logging.getLogger("pipecat_agent").warning(
        "session over: %d frames, %d images, %d dropped, %d late rows, %d interruptions, audio held "
        "back %.0f ms (a voice's first audio out %.0f ms after it came in, median), worker %.1f ms a "
        "frame (median)",
        stats.frames, stats.images, stats.dropped, stats.late_rows, stats.interruptions,
        avatar.delay_ms, median(stats.voice_delay_ms), median(stats.render_ms),
    )  # fmt: skip


async def serve(args: argparse.Namespace) -> None:
    """Load the avatar once, then serve the page and the offer endpoint (one visitor at a time)."""
    from aiohttp import web
    from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection

    from pirender.engine.agents.lipsync import AvatarConfig, load_avatar_assets
    from pirender.engine.server.ice import bind_is_loopback, restrict_host_candidates

    if not bind_is_loopback(args.host):
        raise SystemExit(f"--host {args.host}: this example serves loopback only (127.0.0.1)")
    restrict_host_candidates(["127.0.0.1"])  # ICE on loopback only (aioice skips it otherwise)
    pieces = build_pieces()
    config = AvatarConfig(
        portrait=args.portrait, renderer=args.renderer, fps=args.fps, size_px=args.size, device=args.device
    )
    assets = await asyncio.to_thread(load_avatar_assets, config)
    sessions: set[asyncio.Task[None]] = set()

    async def page(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(HERE / "index.html")

    async def offer(request: web.Request) -> web.Response:
        if sessions:
            return web.json_response({"error": "one visitor at a time: close the other page"}, status=409)
        body = await request.json()
        if body.get("type") != "offer" or not isinstance(body.get("sdp"), str):
            return web.json_response({"error": "POST {sdp, type: 'offer'}"}, status=400)
        connection = SmallWebRTCConnection(ice_servers=[])
        await connection.initialize(sdp=body["sdp"], type="offer")
        task = asyncio.create_task(run_bot(connection, assets, args, pieces))
        sessions.add(task)
        task.add_done_callback(sessions.discard)
        return web.json_response(connection.get_answer())

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_post("/api/offer", offer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port).start()
    print(f"pipecat agent ready: open http://{args.host}:{args.port} (Ctrl-C stops)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        for task in list(sessions):
            task.cancel()
        await runner.cleanup()
        assets.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import pipecat  # noqa: F401
    except ImportError:
        print("this example needs pipecat: pip install 'pirender-live[pipecat]'", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
