"""The citizen API's error table and error bodies (spec §2.1, §2.10).

Every error body is ``{"errors": [{errorCode, errorMessage, statusCode, errorType}, ...]}`` and the
HTTP status is the highest ``statusCode`` in it. A key missing from the table (the city's
validation uses ``startDateAfterEndDate`` and ``dateRangeTooLarge`` without listing them) turns into
``unknownError`` with status 520, exactly as on the real site.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ErrorType = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class ErrorEntry:
    code: str
    status: int
    message: str
    type: ErrorType

    def body(self) -> dict[str, Any]:
        return {
            "errorCode": self.code,
            "errorMessage": self.message,
            "statusCode": self.status,
            "errorType": self.type,
        }


def _e(code: str, status: int, message: str, type_: ErrorType = "warning") -> ErrorEntry:
    return ErrorEntry(code, status, message, type_)


# key -> entry; the key is what the code raises, errorCode is what the client sees (they differ
# only for the two upper-case array errors).
ERRORS: dict[str, ErrorEntry] = {
    # request and validation
    "invalidRequest": _e("invalidRequest", 400, "Invalid request."),
    "requestMethodNotAllowed": _e("requestMethodNotAllowed", 405, "Request method not allowed."),
    "notFound": _e("notFound", 404, "Endpoint not found.", "error"),
    "invalidStartDate": _e("invalidStartDate", 400, "startDate is required and must be a valid date."),
    "invalidEndDate": _e("invalidEndDate", 400, "endDate is required and must be a valid date."),
    "invalidSlotsStartDate": _e("invalidSlotsStartDate", 400, "slotsStartDate must be a valid date."),
    "invalidSlotsEndDate": _e("invalidSlotsEndDate", 400, "slotsEndDate must be a valid date."),
    "slotsStartDateAfterEndDate": _e(
        "slotsStartDateAfterEndDate", 400, "slotsStartDate must not be after slotsEndDate."
    ),
    "invalidOfficeId": _e("invalidOfficeId", 400, "officeId should be a 32-bit integer."),
    "invalidServiceId": _e("invalidServiceId", 400, "serviceId should be a 32-bit integer."),
    "invalidServiceCount": _e(
        "invalidServiceCount", 400, "serviceCounts should be an array of numeric values."
    ),
    "emptyServiceArrays": _e("EMPTY_SERVICE_ARRAYS", 400, "Service IDs and counts cannot be empty."),
    "mismatchedArrays": _e("MISMATCHED_ARRAYS", 400, "Service IDs and counts must have same length."),
    "invalidProcessId": _e("invalidProcessId", 400, "processId should be a positive 32-bit integer."),
    "invalidScopeId": _e("invalidScopeId", 400, "scopeId should be a positive 32-bit integer."),
    "invalidAuthKey": _e("invalidAuthKey", 400, "authKey should be a string."),
    "invalidDate": _e("invalidDate", 400, "date is required and must be a valid date."),
    "invalidTimestamp": _e(
        "invalidTimestamp",
        400,
        "Missing timestamp or invalid timestamp format. It should be a positive numeric value.",
    ),
    "invalidFamilyName": _e("invalidFamilyName", 400, "familyName should be a non-empty string."),
    "invalidEmail": _e("invalidEmail", 400, "email should be a valid email address."),
    "invalidTelephone": _e(
        "invalidTelephone", 400, "telephone should be a numeric string between 7 and 15 digits."
    ),
    "invalidCustomTextfield": _e("invalidCustomTextfield", 400, "customTextfield should be a string."),
    "invalidCustomTextfield2": _e("invalidCustomTextfield2", 400, "customTextfield2 should be a string."),
    "invalidLocationAndServiceCombination": _e(
        "invalidLocationAndServiceCombination",
        400,
        "The provided service(s) do not exist at the given location.",
    ),
    "invalidSchema": _e("invalidSchema", 400, "Data does not match the required schema."),
    # captcha
    "captchaMissing": _e("captchaMissing", 400, "Missing captcha token."),
    "captchaInvalid": _e("captchaInvalid", 400, "Invalid captcha token."),
    "captchaExpired": _e("captchaExpired", 400, "Captcha token expired."),
    "captchaVerificationFailed": _e("captchaVerificationFailed", 400, "Captcha verification failed."),
    "captchaVerificationError": _e(
        "captchaVerificationError", 400, "An error occurred during captcha verification."
    ),
    # availability
    "noAppointmentForThisDay": _e(
        "noAppointmentForThisDay", 404, "No available days found for the given criteria.", "info"
    ),
    "noAppointmentForThisScope": _e(
        "noAppointmentForThisScope", 404, "Please try again at a later time.", "info"
    ),
    "appointmentNotAvailable": _e(
        "appointmentNotAvailable",
        404,
        "The selected appointment is unfortunately no longer available.",
        "error",
    ),
    # booking
    "appointmentNotFound": _e(
        "appointmentNotFound",
        404,
        "Maybe you have already canceled your appointment? Otherwise, please check that you have used "
        "the correct link.",
        "error",
    ),
    "authKeyMismatch": _e("authKeyMismatch", 406, "Invalid authentication key."),
    "invalidCredentials": _e("invalidCredentials", 406, "Invalid credentials."),
    "processAlreadyExists": _e("processAlreadyExists", 409, "An appointment process already exists."),
    "processAlreadyCalled": _e("processAlreadyCalled", 409, "The appointment has already been called."),
    "processNotReservedAnymore": _e(
        "processNotReservedAnymore", 409, "The appointment is no longer reserved.", "error"
    ),
    "processNotPreconfirmedAnymore": _e(
        "processNotPreconfirmedAnymore", 409, "The appointment is no longer preconfirmed.", "error"
    ),
    "processInvalid": _e("processInvalid", 400, "The process data is invalid."),
    "processDeleteFailed": _e("processDeleteFailed", 500, "Failed to delete the appointment.", "error"),
    "preconfirmationExpired": _e(
        "preconfirmationExpired",
        400,
        "Unfortunately, the time for activating your appointment has expired. Please schedule the "
        "appointment again.",
        "error",
    ),
    "emailIsRequired": _e("emailIsRequired", 406, "Email address is required."),
    "telephoneIsRequired": _e("telephoneIsRequired", 406, "Telephone number is required."),
    "tooManyAppointmentsWithSameMail": _e(
        "tooManyAppointmentsWithSameMail",
        406,
        "You can only book a limited number of appointments with your e-mail address. Please cancel "
        "another appointment before you book a new one.",
        "error",
    ),
    "tooManySlotsPerAppointment": _e("tooManySlotsPerAppointment", 400, "Too many slots per appointment."),
    "tooManyServicesPerAppointment": _e(
        "tooManyServicesPerAppointment", 400, "Too many services per appointment."
    ),
    "appointmentCanNotBeCanceled": _e(
        "appointmentCanNotBeCanceled", 406, "The selected appointment cannot be canceled."
    ),
    # platform and middleware
    "rateLimitExceeded": _e("rateLimitExceeded", 429, "Rate limit exceeded. Please try again later."),
    "ipBlacklisted": _e("IP_BLACKLISTED", 403, "Access denied - IP address is blacklisted.", "error"),
    "requestEntityTooLarge": _e("requestEntityTooLarge", 413, "Request entity too large."),
    "securityHeaderViolation": _e("securityHeaderViolation", 403, "Security policy violation.", "error"),
    "unauthorized": _e("unauthorized", 403, "Unauthorized.", "error"),
    # my-appointments without any Authorization header (the gateway answers 401 before the API)
    "authenticationRequired": _e("unauthorized", 401, "Authentication required.", "error"),
    "serviceUnavailable": _e(
        "serviceUnavailable", 503, "Service Unavailable: The application is under maintenance.", "error"
    ),
    "zmsClientCommunicationError": _e(
        "zmsClientCommunicationError",
        503,
        "The service is temporarily unavailable. Please try again later.",
        "error",
    ),
    "internalError": _e("internalError", 500, "An internal error occurred. Please try again later.", "error"),
    "notImplemented": _e("notImplemented", 501, "Feature not implemented yet.", "error"),
    "unknownError": _e("unknownError", 520, "An unknown error occurred.", "error"),
    # backend lookups
    "sourceNotFound": _e("sourceNotFound", 404, "Source not found.", "error"),
    "providerNotFound": _e("providerNotFound", 404, "Provider not found.", "error"),
    "requestNotFound": _e("requestNotFound", 404, "Requested service not found.", "error"),
    "scopeNotFound": _e("scopeNotFound", 404, "Scope not found.", "error"),
    "scopesNotFound": _e("scopesNotFound", 404, "No scopes found.", "error"),
    "departmentNotFound": _e("departmentNotFound", 404, "Department not found.", "error"),
    "organisationNotFound": _e("organisationNotFound", 404, "Organisation not found.", "error"),
    "mailNotFound": _e("mailNotFound", 404, "Mail template not found.", "error"),
}


def lookup(key: str) -> ErrorEntry:
    """The table entry for ``key``; unknown keys become ``unknownError`` (520), as on the site."""
    return ERRORS.get(key) or ERRORS["unknownError"]


class ApiError(Exception):
    """One or more citizen-API errors; the handler turns it into the error body."""

    def __init__(self, *keys: str) -> None:
        if not keys:
            raise ValueError("ApiError needs at least one error key")
        super().__init__(", ".join(keys))
        self.keys = keys

    @property
    def entries(self) -> list[ErrorEntry]:
        return [lookup(k) for k in self.keys]

    @property
    def status(self) -> int:
        return max(e.status for e in self.entries)

    def body(self) -> dict[str, Any]:
        return {"errors": [e.body() for e in self.entries]}
