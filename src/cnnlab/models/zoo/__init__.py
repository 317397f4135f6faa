"""Every architecture family of the lectures; importing this package registers them all."""

from cnnlab.models.zoo import lenet  # noqa: F401
from cnnlab.models.zoo import resnet, resnext, senet  # noqa: F401  (He 2016, Xie 2017, Hu 2018)
from cnnlab.models.zoo import alexnet, vgg  # noqa: F401  (Krizhevsky 2012, Zeiler & Fergus 2014, VGG 2015)
from cnnlab.models.zoo import googlenet, nin, fractalnet  # noqa: F401  (Szegedy 2015, Lin 2014, Larsson 2017)
from cnnlab.models.zoo import inception_v4  # noqa: F401  (Szegedy, Ioffe, Vanhoucke & Alemi 2017)
from cnnlab.models.zoo import autoencoders  # noqa: F401  (Baldi & Hornik 1989 ... Kingma & Welling 2014)
from cnnlab.models.zoo import fcn  # noqa: F401  (Long 2015, Yu & Koltun 2016, Ronneberger 2015: dense prediction)
from cnnlab.models.zoo import airbench  # noqa: F401  (Jordan 2024: the speed-run network)
from cnnlab.models.zoo import efficientnet_lite  # noqa: F401  (Tan & Le 2019: the Lite variants)
from cnnlab.models.zoo import gan  # noqa: F401  (Radford 2016: DCGAN; Mirza & Osindero 2014: conditional)
from cnnlab.models.zoo import rcnn  # noqa: F401  (Girshick 2015: detection)
from cnnlab.models.zoo import captioning  # noqa: F401  (Vinyals et al. 2015: Show and Tell)
