"""``DynamicFrame``: a thin wrapper of a Spark DataFrame (the stand-in reads every CSV column as a string)."""

from __future__ import annotations


class DynamicFrame:
    def __init__(self, df, glue_ctx=None, name=""):
        self._df = df
        self.glue_ctx = glue_ctx
        self.name = name

    def toDF(self):  # noqa: N802
        return self._df

    @classmethod
    def fromDF(cls, dataframe, glue_ctx, name):  # noqa: N802
        return cls(dataframe, glue_ctx, name)

    def count(self):
        return self._df.count()

    def resolveChoice(self, specs=None, choice="", database=None, table_name=None, transformation_ctx="",  # noqa: N802
                      info="", stageThreshold=0, totalThreshold=0, catalog_id=None):  # noqa: N803
        if specs is None and not choice:
            raise ValueError("resolveChoice needs specs or choice")
        allowed = ("cast:", "project:", "make_cols", "make_struct", "match_catalog")
        if choice and not choice.startswith(allowed):
            raise ValueError(f"resolveChoice: unknown choice {choice!r}")
        # Columns read by the stand-in are strings, never choice types: nothing to resolve.
        return DynamicFrame(self._df, self.glue_ctx, self.name)

    def schema(self):
        return self._df.schema

    def printSchema(self):  # noqa: N802
        self._df.printSchema()
