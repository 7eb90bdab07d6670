"""Packaging for animegan2. The core needs torch, numpy, pillow, requests, tqdm, filelock and
safetensors; everything heavier is an extra, imported lazily with an error naming it."""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
VERSION = next(
    line.split('"')[1]
    for line in (ROOT / "animegan2" / "__init__.py").read_text().splitlines()
    if line.startswith("__version__")
)

EXTRAS = {
    "video": ["av>=11"],
    "face": ["opencv-python-headless>=4.5,<5"],  # 5.x no longer ships the Haar cascades
    "onnx": ["onnx>=1.14", "onnxruntime>=1.16"],
    "train": ["opencv-python-headless>=4.5", "pyyaml>=6", "tomli>=2; python_version < '3.11'"],
    "hf": ["huggingface_hub>=0.20"],
    "tf": ["tensorflow-cpu>=2.12"],
    "web": ["gradio>=6.0,<7"],  # Gradio 6 API (fit_columns, buttons, api_visibility); the page CSS targets its gallery
    "mobile": ["executorch>=1.5,<2", "coremltools>=9.0"],
    # Not in "all": litert-converter 0.5 pins xdsl 0.28, which pins typing-extensions<4.13 and so
    # downgrades pydantic under gradio. Install it in its own environment (scripts/setup_dev.sh
    # makes .venv-litert for the tests). The interpreter alone (ai-edge-litert) installs anywhere.
    "litert": ["litert-torch>=0.10,<1", "ai-edge-litert>=2.3,<3"],
}
EXTRAS["all"] = sorted({dep for name, deps in EXTRAS.items() if name != "litert" for dep in deps})
EXTRAS["test"] = EXTRAS["all"] + ["pytest>=7", "gradio_client>=0.10", "playwright>=1.40", "ai-edge-litert>=2.3,<3"]

setup(
    name="animegan2",
    version=VERSION,
    description="AnimeGANv2 for PyTorch: exact to the TensorFlow original, verified model zoo, images, faces and video",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["animegan2", "animegan2.*"]),
    package_data={"animegan2": ["weights_manifest.json", "web_static/*"]},
    install_requires=[
        "torch>=2.0,<3",
        "numpy>=1.23",
        "pillow>=9.1",
        "requests>=2.28",
        "urllib3>=2",  # requests' own dependency; 2.x has read1, which a trickling server cannot hold open
        "tqdm>=4.60",
        "filelock>=3.9",
        "safetensors>=0.4",
    ],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["animegan2=animegan2.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Image Processing",
        "Topic :: Multimedia :: Graphics",
    ],
)
