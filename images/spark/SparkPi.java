// SparkPi for the Spark image built here: Spark's distribution ships its examples jar, Maven
// Central does not, so the image carries this program under the class name and path the
// examples use (org.apache.spark.examples.SparkPi in examples/jars/spark-examples.jar).
// It estimates pi from random points in the unit square over `slices` partitions (the first
// argument, default 2) and prints "Pi is roughly <estimate>".
package org.apache.spark.examples;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.SparkSession;

public final class SparkPi {
  private SparkPi() {}

  public static void main(String[] args) {
    SparkSession spark = SparkSession.builder().appName("Spark Pi").getOrCreate();
    try {
      JavaSparkContext context = new JavaSparkContext(spark.sparkContext());
      int slices = args.length > 0 ? Integer.parseInt(args[0]) : 2;
      int points = (int) Math.min(100_000L * slices, Integer.MAX_VALUE);
      List<Integer> seeds = new ArrayList<>(points);
      for (int i = 0; i < points; i++) {
        seeds.add(i);
      }
      long inside =
          context
              .parallelize(seeds, slices)
              .filter(
                  seed -> {
                    double x = ThreadLocalRandom.current().nextDouble(-1, 1);
                    double y = ThreadLocalRandom.current().nextDouble(-1, 1);
                    return x * x + y * y <= 1;
                  })
              .count();
      System.out.println("Pi is roughly " + 4.0 * inside / points);
    } finally {
      spark.stop();
    }
  }
}
