"""The certification layer: ``certify()`` (the pytest-free core), its options and the certificate.

Cheap to import (nothing here imports Airflow at module level): ``from conformance import certify``.
"""

from __future__ import annotations

from conformance.certification.certificate import Certificate
from conformance.certification.core import certify
from conformance.certification.options import CertifyOptions

__all__ = ["Certificate", "CertifyOptions", "certify"]
