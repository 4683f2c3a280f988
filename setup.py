"""mmhire: the Hire-MLP backbone for MMDetection 3.x and MMSegmentation 1.x."""
import os.path as osp

from setuptools import find_packages, setup


def read_version():
    namespace = {}
    with open(osp.join(osp.dirname(__file__), 'mmhire', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


setup(
    name='mmhire',
    version=read_version(),
    description='Hire-MLP backbone for MMDetection 3.x and MMSegmentation 1.x',
    long_description=(
        '# mmhire\n\n'
        'The Hire-MLP vision backbone ("Hire-MLP: Vision MLP via Hierarchical Rearrangement", '
        'Guo et al., CVPR 2022) as a plugin for MMDetection 3.x and MMSegmentation 1.x: '
        "`type='HireMLP'` in any config that imports `mmhire`, loading the authors' released "
        'ImageNet checkpoints as they are.\n\n'
        'Install into an environment that has torch and mmcv (with its ops): '
        '`pip install -e .` (extras: `tests`, `deploy`).\n\n'
        'Usage, configs, results and the reference pages: see README.md and docs/ in the '
        'repository.\n'),
    long_description_content_type='text/markdown',
    python_requires='>=3.8',
    packages=find_packages(include=['mmhire', 'mmhire.*']),
    # Ranges that admit the known-good set pinned in requirements/constraints.txt.
    install_requires=[
        'torch>=2.0',
        'mmcv>=2.0.0,<2.2.0',  # mmdet 3.3 refuses mmcv >= 2.2
        'mmengine>=0.10.0,<1.0',
        'mmdet>=3.1.0,<3.4.0',
        'mmsegmentation>=1.1.0,<1.3.0',
        'ftfy',   # imported by every mmseg import, but not declared by mmseg
        'regex',  # likewise
        'einops',
        'numpy',
        'opencv-python',
        'pycocotools',
        'matplotlib',
    ],
    extras_require={
        'tests': ['pytest', 'pytest-xdist', 'hypothesis', 'psutil'],
        # requirements/deploy.txt says why these exact versions
        'deploy': ['mmdeploy==1.3.1', 'onnx==1.17.0', 'onnxruntime==1.24.1', 'onnxscript==0.7.2',
                   'protobuf==3.20.2'],
    },
    license='Apache-2.0',
)
