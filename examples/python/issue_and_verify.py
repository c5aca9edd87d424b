#!/usr/bin/env python3
"""certseal end to end from Python: register a department, publish a licence type, register and
activate a seal, issue a licence, and verify it by ID and by its signed document.

Runs against a development-mode server (`certseal serve --dev-auth`), where the caller's identity
is the `x-certseal-department` and `x-certseal-role` metadata. Safe to rerun against the same
server: what already exists is reused, and the idempotency key returns the licence issued first.

Exit status: 0 when both checks are TOTAL_PASSED, 1 on a gRPC error or an unreachable server,
2 when a check answers anything but TOTAL_PASSED.
"""

import argparse
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent

# The registry operator of the README's quick start.
ADMIN_DEPARTMENT = "11100000000013338W"
# A made-up credit code with a correct GB 32100 check character.
DEPARTMENT = "11350200MB0123456A"
DEPARTMENT_NAME = "厦门市市场监督管理局"
REGION = "350200"
SEAL_NAME = "厦门市市场监督管理局行政审批专用章"

# Deadline of each call, in seconds.
TIMEOUT = 30


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--server", default="127.0.0.1:50051", help="host:port (default %(default)s)")
    p.add_argument(
        "--generated",
        default=str(HERE / "generated"),
        help="folder holding the generated certseal/v1/ modules (default %(default)s)",
    )
    p.add_argument("--department", default=DEPARTMENT, help="credit code of the issuing department")
    p.add_argument("--admin-department", default=ADMIN_DEPARTMENT, help="credit code of the registry operator")
    p.add_argument("--type-code", help="licence type: credit code + 3 digits (default: DEPARTMENT + 001)")
    p.add_argument("--idempotency-key", default="python-example-1")
    p.add_argument("--seal-image", default=str(HERE.parent / "seal.svg"), help="PNG or SVG")
    return p.parse_args()


args = parse_args()
# Generated code is not committed: it comes from generate.sh, into --generated.
sys.path.insert(0, args.generated)
try:
    import grpc
    from certseal.v1 import department_pb2 as dept_pb
    from certseal.v1 import department_pb2_grpc as dept_rpc
    from certseal.v1 import licence_pb2 as lic_pb
    from certseal.v1 import licence_pb2_grpc as lic_rpc
    from certseal.v1 import seal_pb2 as seal_pb
    from certseal.v1 import seal_pb2_grpc as seal_rpc
    from certseal.v1 import template_pb2 as tpl_pb
    from certseal.v1 import template_pb2_grpc as tpl_rpc
    from certseal.v1 import verification_pb2 as ver_pb
    from certseal.v1 import verification_pb2_grpc as ver_rpc
except ImportError as e:
    sys.exit(f"error: {e}: run generate.sh {args.generated} in a virtualenv with requirements.txt installed")


def as_actor(department, role):
    """Call metadata naming the caller in development mode."""
    return (("x-certseal-department", department), ("x-certseal-role", role))


def food_licence_template():
    """examples/food-licence.toml as a TemplateContent."""
    F = tpl_pb.FieldSpec
    public, personal = tpl_pb.VISIBILITY_PUBLIC, tpl_pb.VISIBILITY_PERSONAL
    return tpl_pb.TemplateContent(
        name="食品经营许可证",
        category=tpl_pb.TEMPLATE_CATEGORY_LICENCE,
        default_validity_days=1825,
        fields=[
            F(name="operator_name", label="经营者名称", type=tpl_pb.FIELD_TYPE_STRING,
              required=True, max_length=100, visibility=public),
            F(name="operator_code", label="统一社会信用代码", type=tpl_pb.FIELD_TYPE_CREDIT_CODE,
              required=True, visibility=public),
            F(name="legal_rep_id", label="法定代表人身份证号", type=tpl_pb.FIELD_TYPE_RESIDENT_ID,
              required=True, visibility=personal),
            F(name="business_kind", label="经营项目", type=tpl_pb.FIELD_TYPE_ENUM, required=True,
              enum_values=["预包装食品销售", "散装食品销售", "热食类食品制售", "冷食类食品制售"],
              visibility=public),
            F(name="premises_area", label="经营场所面积（平方米）", type=tpl_pb.FIELD_TYPE_DECIMAL,
              scale=2, visibility=public),
            F(name="licence_no", label="许可证编号", type=tpl_pb.FIELD_TYPE_STRING, required=True,
              pattern="JY[0-9]{14}", max_length=16, visibility=public),
        ],
    )


# examples/food-licence-fields.json: every value is text (decimals too; the registry pads them).
LICENCE_FIELDS = {
    "operator_name": "厦门某某餐饮有限公司",
    "operator_code": "91350200MA2XYW123L",
    "legal_rep_id": "11010519491231002X",
    "business_kind": "热食类食品制售",
    "premises_area": "120.5",
    "licence_no": "JY13502030012345",
}
HOLDER = lic_pb.Holder(kind=lic_pb.HOLDER_KIND_ORGANISATION, id="91350200MA2XYW123L", name="厦门某某餐饮有限公司")


def register_department(stub, admin, code):
    try:
        d = stub.RegisterDepartment(
            dept_pb.RegisterDepartmentRequest(credit_code=code, name=DEPARTMENT_NAME, region_code=REGION),
            metadata=admin, timeout=TIMEOUT)
        print(f"department {d.credit_code}: registered")
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
        d = stub.GetDepartment(dept_pb.GetDepartmentRequest(credit_code=code), metadata=admin, timeout=TIMEOUT)
        print(f"department {d.credit_code}: already registered")


def publish_template(stub, admin, department, type_code):
    """The published version to issue from: version 1, made now, or the latest of an earlier run."""
    try:
        draft = stub.CreateTemplateDraft(
            tpl_pb.CreateTemplateDraftRequest(type_code=type_code, base_version=0, content=food_licence_template()),
            metadata=admin, timeout=TIMEOUT)
        version = draft.version
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
        # An earlier run made the type: issue from its latest published version...
        try:
            t = stub.GetTemplate(tpl_pb.GetTemplateRequest(type_code=type_code, version=0),
                                 metadata=admin, timeout=TIMEOUT)
            print(f"template {t.type_code} v{t.version}: already published")
            return t.version
        except grpc.RpcError as e2:
            if e2.code() != grpc.StatusCode.NOT_FOUND:
                raise
        # ...or publish the draft it left when it stopped before publishing.
        version = latest_version(stub, admin, department, type_code)
    t = stub.PublishTemplate(tpl_pb.PublishTemplateRequest(type_code=type_code, version=version),
                             metadata=admin, timeout=TIMEOUT)
    print(f"template {t.type_code} v{t.version}: published")
    return t.version


def latest_version(stub, admin, department, type_code):
    latest, token = 0, ""
    while True:
        page = stub.ListTemplates(
            tpl_pb.ListTemplatesRequest(defining_department=department, page_size=1000, page_token=token),
            metadata=admin, timeout=TIMEOUT)
        latest = max([latest] + [t.version for t in page.templates if t.type_code == type_code])
        token = page.next_page_token
        if not token:
            return latest


def active_seal(stub, admin, department, image_path):
    """An ACTIVE seal of the department: the one an earlier run made, else a new one, filed now."""
    token = ""
    while True:
        page = stub.ListSeals(
            seal_pb.ListSealsRequest(department=department, status=seal_pb.SEAL_STATUS_ACTIVE,
                                     page_size=1000, page_token=token),
            metadata=admin, timeout=TIMEOUT)
        for s in page.seals:
            if s.name == SEAL_NAME:
                print(f"seal {s.seal_id}: already active")
                return s.seal_id
        token = page.next_page_token
        if not token:
            break

    image = pathlib.Path(image_path).read_bytes()
    # The registry generates the key (Ed25519 by default) and its seal CA issues the certificate.
    reply = stub.RegisterSeal(
        seal_pb.RegisterSealRequest(department=department, name=SEAL_NAME,
                                    type=seal_pb.SEAL_TYPE_SPECIAL_PURPOSE, image=image),
        metadata=admin, timeout=TIMEOUT)
    seal_id = reply.seal.seal_id
    print(f"seal {seal_id}: registered, {seal_pb.SealStatus.Name(reply.seal.status)}")
    s = stub.ActivateSeal(seal_pb.SealTransitionRequest(seal_id=seal_id, note="filed"),
                          metadata=admin, timeout=TIMEOUT)
    print(f"seal {seal_id}: {seal_pb.SealStatus.Name(s.status)}")
    return seal_id


def show(label, result):
    """Prints one verification result; True when it passed."""
    indication = ver_pb.Indication.Name(result.indication)
    line = f"{label}: {indication}"
    if result.indication != ver_pb.TOTAL_PASSED:
        line += f" ({ver_pb.SubIndication.Name(result.sub_indication)}: {result.reason})"
    print(line)
    print(f"  receipt {result.receipt_id}, audit log index {result.receipt_log_index}")
    return result.indication == ver_pb.TOTAL_PASSED


def run(channel):
    admin = as_actor(args.admin_department, "admin")
    issuer = as_actor(args.department, "issuer")
    # A department other than the issuer, as `certseal bench` (src/cli/bench.rs) checks: in
    # development mode the sharing policy is not enforced, so it needs no read grant.
    verifier = as_actor(args.admin_department, "verifier")
    type_code = args.type_code or args.department + "001"

    # 1. The issuing department.
    register_department(dept_rpc.DepartmentServiceStub(channel), admin, args.department)
    # 2. Its licence type.
    version = publish_template(tpl_rpc.TemplateServiceStub(channel), admin, args.department, type_code)
    # 3. Its seal.
    seal_id = active_seal(seal_rpc.SealServiceStub(channel), admin, args.department, args.seal_image)

    # 4. The department's own system issues a licence; the key makes a retry return the same one.
    request = lic_pb.IssueLicenceRequest(
        type_code=type_code, template_version=version, holder=HOLDER, seal_id=seal_id,
        idempotency_key=args.idempotency_key,
        fields={k: lic_pb.FieldValue(text=v) for k, v in LICENCE_FIELDS.items()})
    licence = lic_rpc.LicenceServiceStub(channel).IssueLicence(request, metadata=issuer, timeout=TIMEOUT)
    print(f"licence {licence.licence_id}: {lic_pb.LicenceStatus.Name(licence.status)}")

    # 5. Another department checks it, by ID and by the signed document the holder presents.
    purpose = ver_pb.Purpose(code="ADMIN_APPROVAL", text="食品经营许可申请材料核验")
    verification = ver_rpc.VerificationServiceStub(channel)
    by_id = verification.VerifyLicence(
        ver_pb.VerifyLicenceRequest(licence_id=licence.licence_id, purpose=purpose),
        metadata=verifier, timeout=TIMEOUT)
    by_doc = verification.VerifyDocument(
        ver_pb.VerifyDocumentRequest(cose=licence.document, purpose=purpose),
        metadata=verifier, timeout=TIMEOUT)
    passed = show("verify by ID", by_id)
    passed = show("verify by document", by_doc) and passed

    # 6. What a holder would carry: the ID and the QR string.
    print(f"licence ID: {licence.licence_id}")
    print(f"QR string: {len(licence.qr)} characters")
    if not passed:
        print("error: the licence did not pass verification (expected TOTAL_PASSED)", file=sys.stderr)
        return 2
    return 0


def describe(error):
    """The status code, its message and, for bad input, each offending field."""
    text = f"{error.code().name}: {error.details()}"
    try:
        from google.rpc import error_details_pb2
        from grpc_status import rpc_status

        status = rpc_status.from_call(error)
        for detail in status.details if status else []:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                for v in bad.field_violations:
                    line = f"{v.field}: {v.description}"
                    if line not in text:  # the message often names the first field already
                        text += f"\n  {line}"
    except (ImportError, ValueError, AttributeError):
        pass  # Details are a bonus: the code and message say enough.
    return text


def main():
    with grpc.insecure_channel(args.server) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=10)
        except grpc.FutureTimeoutError:
            print(f"error: no certseal server answers at {args.server}", file=sys.stderr)
            return 1
        try:
            return run(channel)
        except grpc.RpcError as e:
            print(f"error: {describe(e)}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
