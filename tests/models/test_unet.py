"""U-Net at the paper's size."""

from jaxseg.models import unet
from tests.helpers import conv_bn_params, param_count


def test_paper_unet_parameter_count():
  widths = [64, 128, 256, 512, 1024]
  double = lambda c_in, c: conv_bn_params(c_in, c) + conv_bn_params(c, c)
  down = double(3, 64) + sum(double(widths[i], widths[i + 1]) for i in range(4))
  up = sum(
    (2 * 2 * widths[i + 1] * widths[i] + widths[i]) + double(2 * widths[i], widths[i])
    for i in range(4)
  )
  assert param_count(unet.UNet(num_classes=2)) == down + up + (64 * 2 + 2) == 31_037_698
