"""type='HireMLP' builds from mmdet and mmseg configs."""
import subprocess
import sys
import textwrap

import pytest
from conftest import TINY_ARCH

from mmhire import HireMLP


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_build_from_scope(scope):
    from mmengine.registry import DefaultScope
    registry = {'mmdet': 'mmdet.registry', 'mmseg': 'mmseg.registry'}[scope]
    MODELS = __import__(registry, fromlist=['MODELS']).MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(dict(type='HireMLP', arch=TINY_ARCH, out_indices=(3,)))
    assert isinstance(model, HireMLP) and model.out_indices == (3,)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_custom_imports_in_a_config(tmp_path, scope):
    """A fresh interpreter that only reads a config with custom_imports can build the backbone."""
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(textwrap.dedent(f"""
        custom_imports = dict(imports=['mmhire'], allow_failed_imports=False)
        default_scope = '{scope}'
        backbone = dict(type='HireMLP', arch='tiny')
    """))
    code = textwrap.dedent(f"""
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        from {scope}.registry import MODELS
        cfg = Config.fromfile({str(cfg)!r})
        init_default_scope(cfg.default_scope)
        print(type(MODELS.build(cfg.backbone)).__name__)
    """)
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith('HireMLP')
