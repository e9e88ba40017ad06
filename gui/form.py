"""A parameter form generated from a protocol's ``Param`` declarations.

One line edit per parameter, with its unit, the paper's default as placeholder and a tooltip
from its description and allowed range. Each field is checked as it is typed with
``Param.parse``, the very code behind ``labctl run -p``, so the message under a field is the
one the CLI prints (``parameter 'rate': 50 mV/s is out of range (allowed: …)``).
"""

from __future__ import annotations

from qtpy import QtWidgets

from labctl.params import Param, ParameterError
from labctl.queue.jobparams import as_text

INVALID_STYLE = "QLineEdit { border: 1px solid #c62828; background: #fdecea; }"


class ParamForm(QtWidgets.QWidget):
    """Fields for ``params``; ``values()`` returns only what the user typed (text)."""

    def __init__(self, params: tuple[Param, ...], parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.params = {p.name: p for p in params}
        self.edits: dict[str, QtWidgets.QLineEdit] = {}
        self.errors: dict[str, str] = {}
        self._error_labels: dict[str, QtWidgets.QLabel] = {}
        layout = QtWidgets.QFormLayout(self)
        layout.setFieldGrowthPolicy(QtWidgets.QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for param in params:
            edit = QtWidgets.QLineEdit()
            edit.setObjectName(f"param_{param.name}")
            edit.setPlaceholderText(param.describe_default())
            tip = f"{param.help}\nallowed: {param.allowed}\ndefault: {param.describe_default()}"
            edit.setToolTip(tip.strip())
            edit.textChanged.connect(lambda _text, name=param.name: self._check(name))
            unit = QtWidgets.QLabel(param.unit)
            row = QtWidgets.QHBoxLayout()
            row.addWidget(edit, 1)
            row.addWidget(unit)
            error = QtWidgets.QLabel("")
            error.setObjectName(f"error_{param.name}")
            error.setStyleSheet("color: #c62828;")
            error.setWordWrap(True)
            error.hide()
            box = QtWidgets.QVBoxLayout()
            box.setSpacing(1)
            box.addLayout(row)
            box.addWidget(error)
            label = QtWidgets.QLabel(param.name)
            label.setToolTip(tip.strip())
            layout.addRow(label, box)
            self.edits[param.name] = edit
            self._error_labels[param.name] = error

    def _check(self, name: str) -> None:
        text = self.edits[name].text().strip()
        message = ""
        if text:
            try:
                self.params[name].parse(text)
            except ParameterError as exc:
                message = str(exc)
        self._show_error(name, message)

    def _show_error(self, name: str, message: str) -> None:
        if message:
            self.errors[name] = message
        else:
            self.errors.pop(name, None)
        label = self._error_labels[name]
        label.setText(message)
        label.setVisible(bool(message))
        self.edits[name].setStyleSheet(INVALID_STYLE if message else "")

    def show_error(self, exc: ParameterError) -> bool:
        """Put a whole-form error (a cross-parameter check) under its field; False if not ours."""
        if exc.name in self.edits:
            self._show_error(exc.name, str(exc))
            return True
        return False

    def values(self) -> dict[str, str]:
        return {name: edit.text().strip() for name, edit in self.edits.items() if edit.text().strip()}

    def set_values(self, values: dict[str, object]) -> None:
        for name, edit in self.edits.items():
            value = values.get(name)
            edit.setText("" if value is None else as_text(value))
