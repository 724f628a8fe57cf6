"""SegNet at the paper's size: VGG16-BN encoder plus the mirrored decoder."""

from jaxseg.models import segnet
from tests.helpers import conv_bn_params, param_count


def test_paper_segnet_parameter_count():
  decoder = (
    3 * conv_bn_params(512, 512)
    + 2 * conv_bn_params(512, 512)
    + conv_bn_params(512, 256)
    + 2 * conv_bn_params(256, 256)
    + conv_bn_params(256, 128)
    + conv_bn_params(128, 128)
    + conv_bn_params(128, 64)
    + conv_bn_params(64, 64)
    + (9 * 64 * 21 + 21)
  )
  assert param_count(segnet.SegNet(num_classes=21)) == 14_723_136 + decoder == 29_451_413
